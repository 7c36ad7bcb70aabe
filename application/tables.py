"""Tables the application layer keeps beside the event store (not derived from events)."""

from __future__ import annotations

from sqlalchemy import MetaData

metadata = MetaData()
