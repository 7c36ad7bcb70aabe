"""The read model: plain SQL tables filled from the event store, exactly once."""
