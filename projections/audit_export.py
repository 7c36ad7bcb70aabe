"""CSV exports of the audit trail and the postings, straight from the events, for spreadsheets.

The columns are those of the read model's `audit_trail` and `postings` tables (see
docs/read-model.md), plus `effective_date` on the audit trail, so a spreadsheet built on one
works on the other. A manifest records what was exported and the SHA-256 of each file.

The files are written into a scratch directory and moved into place only when complete, the
manifest last: a failure part-way (an unreadable event, a full disk) leaves the output
directory as it was.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from domain.payment import Payment
from domain.postings import effective_at, postings_for
from projections.ledger_view import (
    PAYMENT_EVENTS,
    POSTING_COLUMNS,
    audit_row,
    posting_rows,
    uk_date,
)

# The read model's own definition of an audit row's fund, reference and amount: the export
# must say exactly what the audit_trail table says.

AUDIT_TRAIL_FILE = "audit_trail.csv"
POSTINGS_FILE = "postings.csv"
MANIFEST_FILE = "manifest.json"
AUDIT_TRAIL_COLUMNS = (
    "position",
    "event_id",
    "recorded_at",
    "effective_at",
    "effective_date",
    "actor",
    "action",
    "payment_id",
    "fund_code",
    "reference",
    "amount_pence",
    "reason",
    "correlation_id",
)
# A spreadsheet runs a cell starting with one of these as a formula ("CSV injection"); free
# text (reasons, notes, actors) is prefixed with an apostrophe so it is shown, never run.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_TEXT_COLUMNS = {"actor", "reason", "reference", "correlation_id"}


class PeriodBasis(StrEnum):
    """Which clock picks the events of a period."""

    EFFECTIVE = "effective"  # when the money movement takes effect
    RECORDED = "recorded"  # when the ledger recorded it


@dataclass
class ExportSummary:
    start: datetime
    end: datetime
    basis: PeriodBasis
    events_read: int = 0
    last_position: int = 0
    audit_rows: int = 0
    posting_rows: int = 0
    postings_total_pence: int = 0
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "to_before": self.end.isoformat(),
            "basis": self.basis.value,
            "events_read": self.events_read,
            "last_position": self.last_position,
            "audit_rows": self.audit_rows,
            "posting_rows": self.posting_rows,
            "postings_total_pence": self.postings_total_pence,
            "files_sha256": self.files,
        }


def export_audit(
    events: Iterable[tuple[int, Any]],
    out_dir: Path,
    *,
    start: datetime,
    end: datetime,
    basis: PeriodBasis = PeriodBasis.EFFECTIVE,
) -> ExportSummary:
    """Write the events with `start <= time < end` (by `basis`) as CSV files in `out_dir`,
    all three or (on any failure) none.

    Every event is read, since effective dates do not follow recording order; the channel of
    a payment's later postings comes from its Received event, read on the way. The postings
    of a whole period sum to zero, like every event's.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    # Inside out_dir, so the moves below stay on one file system (os.replace is atomic).
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as scratch:
        summary = _write_export(events, Path(scratch), start=start, end=end, basis=basis)
        for name in (AUDIT_TRAIL_FILE, POSTINGS_FILE, MANIFEST_FILE):
            os.replace(Path(scratch) / name, out_dir / name)
    return summary


def _write_export(
    events: Iterable[tuple[int, Any]],
    out_dir: Path,
    *,
    start: datetime,
    end: datetime,
    basis: PeriodBasis,
) -> ExportSummary:
    summary = ExportSummary(start, end, basis)
    channels: dict[str, str] = {}
    trail_path, postings_path = out_dir / AUDIT_TRAIL_FILE, out_dir / POSTINGS_FILE
    with (
        trail_path.open("w", newline="", encoding="utf-8") as trail_file,
        postings_path.open("w", newline="", encoding="utf-8") as postings_file,
    ):
        trail = csv.DictWriter(trail_file, AUDIT_TRAIL_COLUMNS)
        postings = csv.DictWriter(postings_file, POSTING_COLUMNS)
        trail.writeheader()
        postings.writeheader()
        for position, event in events:
            summary.events_read += 1
            summary.last_position = position
            payment_id = str(event.originator_id) if isinstance(event, PAYMENT_EVENTS) else None
            if isinstance(event, Payment.Received):
                channels[str(event.originator_id)] = event.channel
            moment = effective_at(event)
            chosen = moment if basis is PeriodBasis.EFFECTIVE else event.timestamp
            if not start <= chosen < end:
                continue
            row = audit_row(position, event, payment_id, moment)
            trail.writerow(_cells(row | {"effective_date": uk_date(moment)}))
            summary.audit_rows += 1
            channel = channels.get(payment_id) if payment_id else getattr(event, "channel", None)
            for row in posting_rows(
                position, event, postings_for(event), payment_id, moment, channel
            ):
                postings.writerow(_cells(row))
                summary.posting_rows += 1
                summary.postings_total_pence += row["amount_pence"]
    summary.files = {path.name: _sha256(path) for path in (trail_path, postings_path)}
    (out_dir / MANIFEST_FILE).write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary


def _cells(row: dict[str, Any]) -> dict[str, Any]:
    cells = {}
    for column, value in row.items():
        if isinstance(value, datetime | date):
            value = value.isoformat()
        elif (
            column in _TEXT_COLUMNS and isinstance(value, str) and value.startswith(_FORMULA_STARTS)
        ):
            value = "'" + value
        cells[column] = value
    return cells


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
