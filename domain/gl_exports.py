"""The record of every day exported to the finance system (see domain/gl_export.py).

Apart from the journal lines so that `domain.postings` can name these events as moving no
money without importing the posting rules back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.errors import InvalidRequest
from domain.funds import LEDGER_NAMESPACE


def checksum(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@dataclass(frozen=True)
class DayExport:
    export_date: date
    # The file holds the day's postings up to `cutoff_position`, and adjustments for days
    # exported before it recorded after `previous_cutoff_position` up to there.
    cutoff_position: int
    previous_cutoff_position: int
    exported_before: tuple[date, ...]
    fund_codes: dict[str, tuple[str, str]]
    control_codes: dict[str, str]
    columns: list[tuple[str, str]] | None
    sha256: str
    lines_count: int
    exported_by: str
    exported_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "export_date": self.export_date.isoformat(),
            "cutoff_position": self.cutoff_position,
            "previous_cutoff_position": self.previous_cutoff_position,
            "sha256": self.sha256,
            "lines_count": self.lines_count,
            "exported_by": self.exported_by,
            "exported_at": self.exported_at,
        }


class GeneralLedgerExports(Aggregate):
    """Every day exported to the finance system, in the order they were exported."""

    @staticmethod
    def create_id() -> UUID:
        return uuid5(LEDGER_NAMESPACE, "general-ledger-exports")

    class Opened(Aggregate.Created):
        actor: str

    class DayExported(Aggregate.Event):
        export_date: str
        cutoff_position: int
        previous_cutoff_position: int
        fund_codes: dict[str, list[str]]
        control_codes: dict[str, str]
        sha256: str
        lines_count: int
        actor: str
        # The finance system's own column names and order; None: the documented layout.
        columns: list[list[str]] | None = None

        def apply(self, exports: GeneralLedgerExports) -> None:
            exports.days[date.fromisoformat(self.export_date)] = DayExport(
                export_date=date.fromisoformat(self.export_date),
                cutoff_position=self.cutoff_position,
                previous_cutoff_position=self.previous_cutoff_position,
                exported_before=tuple(exports.days),
                fund_codes={k: (v[0], v[1]) for k, v in self.fund_codes.items()},
                control_codes=dict(self.control_codes),
                columns=[(h, c) for h, c in self.columns] if self.columns else None,
                sha256=self.sha256,
                lines_count=self.lines_count,
                exported_by=self.actor,
                exported_at=self.timestamp.isoformat(),
            )

    def __init__(self, actor: str) -> None:
        self.days: dict[date, DayExport] = {}

    @classmethod
    def open(cls, actor: str) -> GeneralLedgerExports:
        return cls._create(cls.Opened, id=cls.create_id(), actor=actor)

    @property
    def last_cutoff_position(self) -> int:
        return max((export.cutoff_position for export in self.days.values()), default=0)

    def record(
        self,
        export_date: date,
        *,
        cutoff_position: int,
        fund_codes: Mapping[str, tuple[str, str]],
        control_codes: Mapping[str, str],
        columns: Sequence[tuple[str, str]] | None,
        content: bytes,
        lines_count: int,
        actor: str,
    ) -> None:
        if export_date in self.days:
            raise InvalidRequest(f"{export_date.isoformat()} is already exported")
        if cutoff_position < self.last_cutoff_position:
            raise InvalidRequest(
                f"the read model (position {cutoff_position}) is behind the last export "
                f"(position {self.last_cutoff_position}); wait for it to catch up and retry"
            )
        self.trigger_event(
            self.DayExported,
            export_date=export_date.isoformat(),
            cutoff_position=cutoff_position,
            previous_cutoff_position=self.last_cutoff_position,
            fund_codes={k: list(v) for k, v in sorted(fund_codes.items())},
            control_codes=dict(sorted(control_codes.items())),
            columns=[list(pair) for pair in columns] if columns else None,
            sha256=checksum(content),
            lines_count=lines_count,
            actor=actor,
        )
