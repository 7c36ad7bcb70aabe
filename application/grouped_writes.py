"""What a command hands to a group commit: its encoded events and the rows that commit with
them (the stored idempotent response, payer details). The event store decides how to write
them; the application only says what belongs together."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from sqlalchemy import Table

# A command gives up waiting for its group after this long (the database is then probably
# unreachable).
WAIT_LIMIT_S = 30.0


@dataclass(frozen=True)
class Row:
    """A row of another table written with a command's events; `position_column`, if set,
    receives the command's last position."""

    table: Table
    values: Mapping[str, Any]
    position_column: str | None = None


@dataclass(frozen=True)
class Write:
    """One command's events, already encoded, and the rows that commit with them.

    `decided_on` holds (id, version) of aggregates the command was decided against without
    changing them (the chart of funds a receipt was checked with; version 0: none stored):
    the write is left out, like a clash, when one of them has a later event stored."""

    events: Sequence[StoredEvent]
    rows: Sequence[Row] = field(default_factory=tuple)
    decided_on: Sequence[tuple[UUID, int]] = field(default_factory=tuple)


class GroupWriter(Protocol):
    def write(self, write: Write) -> int | None:
        """The write's last position once committed with others; None when its events clash
        with stored ones or what it was decided on has changed (the command must run again
        alone)."""

    def submit(self, write: Write) -> asyncio.Future[int | None] | None:
        """`write`'s answer as a future of the running event loop, for a caller that must not
        block; None when the writer has no room for it now (the future raises `queue.Full`
        when it had none by the time the loop handed it over, and `TimeoutError` when no
        answer came within WAIT_LIMIT_S)."""

    def close(self) -> None: ...
