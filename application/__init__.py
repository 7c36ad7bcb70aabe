"""Use cases: load aggregates, call domain methods, save; idempotency; who did it and why."""
