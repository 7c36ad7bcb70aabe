"""The composition root: settings, persistence and the layers wired together, and the CLI."""
