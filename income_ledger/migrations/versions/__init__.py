"""The revisions, oldest first by their numbers (docs/operations.md: writing a revision)."""
