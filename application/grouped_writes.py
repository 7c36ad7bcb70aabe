"""What a command hands to a group commit: its encoded events and the rows that commit with
them (the stored idempotent response, payer details). The event store decides how to write
them; the application only says what belongs together."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventsourcing.persistence import StoredEvent
from sqlalchemy import Table


@dataclass(frozen=True)
class Row:
    """A row of another table written with a command's events; `position_column`, if set,
    receives the command's last position."""

    table: Table
    values: Mapping[str, Any]
    position_column: str | None = None


@dataclass(frozen=True)
class Write:
    """One command's events, already encoded, and the rows that commit with them."""

    events: Sequence[StoredEvent]
    rows: Sequence[Row] = field(default_factory=tuple)


class GroupWriter(Protocol):
    def write(self, write: Write) -> int | None:
        """The write's last position once committed with others; None when its events clash
        with stored ones (the command must run again alone)."""

    def close(self) -> None: ...
