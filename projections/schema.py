"""Read-model tables. Filled by the projections (see docs/read-model.md)."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.engine import Engine

metadata = MetaData()


def create_read_model(engine: Engine) -> None:
    metadata.create_all(engine)
