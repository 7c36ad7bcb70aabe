"""Rebuild the read model from position zero, and verify the live one against a rebuild.

Both fill fresh tables beside the live ones while holding the runner lock. A rebuild then
swaps its tables in with the tracking position in one transaction (DDL is transactional on
PostgreSQL and SQLite), so readers see the old read model or the new one, never a half-built
one. A verification compares every table with the live one and drops its scratch tables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Table, select, text, update
from sqlalchemy.engine import Connection, Engine

from projections.runner import EventSource, Projection, RunnerLock, tracked_position
from projections.schema import (
    LIVE,
    PROJECTION_NAME,
    ReadModel,
    new_index_tag,
    projection_tracking,
    read_model,
)

# Surrogate keys differ between two builds of the same history; they are not compared.
IGNORED_COLUMNS = {"posting_id"}
SAMPLE_DIFFERENCES = 5


@dataclass
class TableDifference:
    table: str
    missing: list[tuple[Any, ...]] = field(default_factory=list)  # in the rebuild, not live
    unexpected: list[tuple[Any, ...]] = field(default_factory=list)  # live, not in the rebuild
    missing_count: int = 0
    unexpected_count: int = 0


@dataclass
class VerifyReport:
    position: int
    tables: dict[str, int]  # table -> rows compared
    differences: list[TableDifference]

    @property
    def ok(self) -> bool:
        return not self.differences


def rebuild(
    engine: Engine,
    source: EventSource,
    *,
    page_size: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Rebuild every read-model table from the events and swap them in; returns the position."""
    scratch = read_model("_rebuild", new_index_tag())
    with RunnerLock(engine).held():
        _fresh(engine, scratch)
        builder = Projection(
            engine, source, model=scratch, name=f"{PROJECTION_NAME}_rebuild", page_size=page_size
        )
        builder.catch_up(progress=progress)
        with engine.begin() as connection:
            # Events recorded while the build ran: apply them inside the swap transaction.
            while builder.process_page(connection=connection):
                pass
            position = tracked_position(connection, builder.name)
            _swap(connection, scratch, LIVE)
            connection.execute(
                projection_tracking.delete().where(
                    projection_tracking.c.projection_name == builder.name
                )
            )
            _set_position(connection, PROJECTION_NAME, position)
    return position


def verify(
    engine: Engine,
    source: EventSource,
    *,
    page_size: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Rebuild into scratch tables up to the live position and compare every table."""
    scratch = read_model("_verify", new_index_tag())
    with RunnerLock(engine).held():
        with engine.connect() as connection:
            position = tracked_position(connection)
        _fresh(engine, scratch)
        try:
            builder = Projection(
                engine, source, model=scratch, name=f"{PROJECTION_NAME}_verify", page_size=page_size
            )
            builder.catch_up(stop=position, progress=progress)
            with engine.connect() as connection:
                counts, differences = {}, []
                for live_table, scratch_table in zip(LIVE.tables, scratch.tables, strict=True):
                    difference, rows = _compare(connection, live_table, scratch_table)
                    counts[live_table.name] = rows
                    if difference is not None:
                        differences.append(difference)
        finally:
            scratch.metadata.drop_all(engine)
            with engine.begin() as connection:
                connection.execute(
                    projection_tracking.delete().where(
                        projection_tracking.c.projection_name == f"{PROJECTION_NAME}_verify"
                    )
                )
    return VerifyReport(position, counts, differences)


def compare_models(engine: Engine, expected: ReadModel, actual: ReadModel) -> list[TableDifference]:
    """Every table of `actual` compared with the same table of `expected`."""
    with engine.connect() as connection:
        return _compare_all(connection, expected, actual)[1]


def _compare_all(
    connection: Connection, live: ReadModel, scratch: ReadModel
) -> tuple[dict[str, int], list[TableDifference]]:
    counts, differences = {}, []
    for live_table, scratch_table in zip(live.tables, scratch.tables, strict=True):
        difference, rows = _compare(connection, live_table, scratch_table)
        counts[live_table.name] = rows
        if difference is not None:
            differences.append(difference)
    return counts, differences


def _fresh(engine: Engine, model: ReadModel) -> None:
    model.metadata.drop_all(engine)
    model.metadata.create_all(engine)


def _swap(connection: Connection, scratch: ReadModel, live: ReadModel) -> None:
    preparer = connection.dialect.identifier_preparer
    for new, old in zip(scratch.tables, live.tables, strict=True):
        connection.execute(text(f"DROP TABLE IF EXISTS {preparer.quote(old.name)}"))
        connection.execute(
            text(f"ALTER TABLE {preparer.quote(new.name)} RENAME TO {preparer.quote(old.name)}")
        )


def _set_position(connection: Connection, name: str, position: int) -> None:
    result = connection.execute(
        update(projection_tracking)
        .where(projection_tracking.c.projection_name == name)
        .values(position=position)
    )
    if result.rowcount == 0:
        connection.execute(
            projection_tracking.insert().values(projection_name=name, position=position)
        )


def _rows(connection: Connection, table: Table) -> Counter[tuple[Any, ...]]:
    columns = [c for c in table.columns if c.name not in IGNORED_COLUMNS]
    return Counter(tuple(_normal(v) for v in row) for row in connection.execute(select(*columns)))


def _normal(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _compare(
    connection: Connection, live: Table, scratch: Table
) -> tuple[TableDifference | None, int]:
    live_rows = _rows(connection, live)
    expected_rows = _rows(connection, scratch)
    missing = expected_rows - live_rows
    unexpected = live_rows - expected_rows
    rows = sum(expected_rows.values())
    if not missing and not unexpected:
        return None, rows
    return TableDifference(
        table=live.name,
        missing=sorted(missing, key=repr)[:SAMPLE_DIFFERENCES],
        unexpected=sorted(unexpected, key=repr)[:SAMPLE_DIFFERENCES],
        missing_count=sum(missing.values()),
        unexpected_count=sum(unexpected.values()),
    ), rows
