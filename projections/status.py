"""Whether each projection is keeping up: the error that stops it, kept in the database.

The runner may be another process (`income-ledger project`) or a thread of the server, so
what it cannot do is written where the server's health check, its metrics and
`income-ledger projections status` can all read it. A row describes the current failure;
once the projection's tracked position passes `error_position` the failure is over, even if
the runner that recorded it died before clearing it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection

from projections.schema import PROJECTION_NAME, UTCDateTime, projection_tracking

MAX_ERROR_CHARS = 2000

status_metadata = MetaData()
projection_status = Table(
    "projection_status",
    status_metadata,
    Column("projection_name", String(64), primary_key=True),
    Column("error_position", BigInteger),  # the event it cannot apply; NULL while healthy
    Column("error", Text),
    Column("failing_since", UTCDateTime()),
    Column("last_attempt_at", UTCDateTime()),
    Column("attempts", Integer, nullable=False),  # failed attempts since failing_since
    Column("errors_total", BigInteger, nullable=False),  # every failure ever, for metrics
    Column("runner", String(200)),  # which process reported it
)


@dataclass(frozen=True)
class ProjectionHealth:
    name: str
    position: int  # the last event applied
    error_position: int | None
    error: str | None
    failing_since: datetime | None
    last_attempt_at: datetime | None
    attempts: int
    errors_total: int
    runner: str | None

    @property
    def stuck(self) -> bool:
        return self.error_position is not None and self.position < self.error_position

    def to_dict(self) -> dict[str, object]:
        return {
            "projection": self.name,
            "position": self.position,
            "stuck": self.stuck,
            "error_position": self.error_position if self.stuck else None,
            "error": self.error if self.stuck else None,
            "failing_since": self.failing_since.isoformat()
            if self.stuck and self.failing_since
            else None,
            "attempts": self.attempts if self.stuck else 0,
            "errors_total": self.errors_total,
            "runner": self.runner if self.stuck else None,
        }


def this_process() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


def record_failure(connection: Connection, name: str, position: int, error: str) -> int:
    """Note a failed attempt to apply the event at `position`; returns the attempts so far."""
    now = datetime.now(UTC)
    row = connection.execute(
        select(projection_status).where(projection_status.c.projection_name == name)
    ).first()
    error = error[:MAX_ERROR_CHARS]
    if row is None:
        connection.execute(
            projection_status.insert().values(
                projection_name=name,
                error_position=position,
                error=error,
                failing_since=now,
                last_attempt_at=now,
                attempts=1,
                errors_total=1,
                runner=this_process(),
            )
        )
        return 1
    same = row.error_position == position
    attempts = row.attempts + 1 if same else 1
    connection.execute(
        update(projection_status)
        .where(projection_status.c.projection_name == name)
        .values(
            error_position=position,
            error=error,
            failing_since=row.failing_since if same else now,
            last_attempt_at=now,
            attempts=attempts,
            errors_total=row.errors_total + 1,
            runner=this_process(),
        )
    )
    return attempts


def record_recovery(connection: Connection, name: str) -> None:
    connection.execute(
        update(projection_status)
        .where(projection_status.c.projection_name == name)
        .values(error_position=None, error=None, failing_since=None, attempts=0, runner=None)
    )


def projection_health(connection: Connection, name: str = PROJECTION_NAME) -> ProjectionHealth:
    tracked = connection.execute(
        select(projection_tracking.c.position).where(projection_tracking.c.projection_name == name)
    ).scalar()
    row = connection.execute(
        select(projection_status).where(projection_status.c.projection_name == name)
    ).first()
    return ProjectionHealth(
        name=name,
        position=int(tracked or 0),
        error_position=row.error_position if row else None,
        error=row.error if row else None,
        failing_since=row.failing_since if row else None,
        last_attempt_at=row.last_attempt_at if row else None,
        attempts=row.attempts if row else 0,
        errors_total=row.errors_total if row else 0,
        runner=row.runner if row else None,
    )


def stuck_projections(connection: Connection) -> list[ProjectionHealth]:
    """Every projection that has stopped at an event it cannot apply (read model, chain)."""
    names = connection.execute(
        select(projection_status.c.projection_name).where(
            projection_status.c.error_position.is_not(None)
        )
    ).scalars()
    health = [projection_health(connection, name) for name in names]
    return [h for h in health if h.stuck]


def errors_total(connection: Connection) -> int:
    """Failed attempts over the ledger's life, every projection together."""
    return int(
        connection.execute(
            select(func.coalesce(func.sum(projection_status.c.errors_total), 0))
        ).scalar_one()
    )
