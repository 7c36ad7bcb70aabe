"""The daily general-ledger export (docs/gl-export.md): make a day's journal once, record it,
and give the identical file whenever the day is exported again.

The lines come from the read model's postings (made by `domain.postings.postings_for`), never
from a second reckoning of the money. An export covers the read-model positions after the
previous export's up to its own: the day's postings, and as adjustment lines the postings
recorded since for days already exported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from application.periods import calendar
from domain.errors import ConcurrentUpdate, GlExportDiffers, InvalidRequest
from domain.gl_export import DEFAULT_CONTROL_CODES, PostingRow, journal_lines, to_csv
from domain.gl_exports import DayExport, GeneralLedgerExports, checksum
from domain.limits import require_query_date
from domain.periods import uk_date

if TYPE_CHECKING:
    from application.ledger import CommandContext, IncomeLedger


class PostingSource(Protocol):
    def position(self) -> int: ...

    def rows(self, day: date, after_position: int, upto_position: int) -> list[PostingRow]: ...


@dataclass(frozen=True)
class GlExport:
    content: bytes
    record: dict[str, Any]
    first_time: bool


def export_day(
    ledger: IncomeLedger,
    source: PostingSource,
    day: date,
    ctx: CommandContext,
    control_codes: Mapping[str, str] | None = None,
    columns: Sequence[tuple[str, str]] | None = None,
) -> GlExport:
    """The GL file of a day that has ended: made and recorded the first time, the same bytes
    after that (checked against the recorded checksum)."""
    require_query_date(day, "date")
    if day >= uk_date(datetime.now(UTC)):
        raise InvalidRequest(f"{day.isoformat()} has not ended; export a day from the day after it")
    for _ in range(2):
        exports = _exports(ledger)
        done = exports.days.get(day)
        if done is not None:
            return GlExport(_again(source, done), _record(ledger, done), False)
        cutoff = source.position()
        rows = _included(source, day, exports.last_cutoff_position, cutoff, set(exports.days))
        funds = _fund_codes(ledger, rows)
        codes = dict(control_codes or {})
        lines = journal_lines(day, rows, funds, codes)
        content = to_csv(lines, columns)
        exports.record(
            day,
            cutoff_position=cutoff,
            fund_codes=funds,
            control_codes=codes,
            columns=columns,
            content=content,
            lines_count=len(lines),
            actor=ctx.actor,
        )
        try:
            ledger.save(exports)
        except IntegrityError:
            continue  # another export was recorded meanwhile: work from it
        return GlExport(content, _record(ledger, exports.days[day]), True)
    raise ConcurrentUpdate("other exports were recorded at the same moment; retry")


def gl_exports(ledger: IncomeLedger) -> list[dict[str, Any]]:
    """Every export, in the order they were made."""
    return [_record(ledger, export) for export in _exports(ledger).days.values()]


def _again(source: PostingSource, done: DayExport) -> bytes:
    if source.position() < done.cutoff_position:
        raise InvalidRequest(
            f"the read model (position {source.position()}) has not caught up with the export "
            f"of {done.export_date.isoformat()} (position {done.cutoff_position}); retry shortly"
        )
    rows = _included(
        source,
        done.export_date,
        done.previous_cutoff_position,
        done.cutoff_position,
        set(done.exported_before),
    )
    lines = journal_lines(done.export_date, rows, done.fund_codes, done.control_codes)
    content = to_csv(lines, done.columns)
    if checksum(content) != done.sha256:
        raise GlExportDiffers(
            f"the export of {done.export_date.isoformat()} made now differs from the one made by "
            f"{done.exported_by} (SHA-256 {done.sha256}); the postings changed after it was "
            "exported. Run `income-ledger audit verify` and `projections verify`"
        )
    return content


def _included(
    source: PostingSource, day: date, after: int, upto: int, exported: set[date]
) -> list[PostingRow]:
    """The day's postings, and other days' postings as adjustments when their day was exported
    before (a day not yet exported gets them in its own export)."""
    return [
        row
        for row in source.rows(day, after, upto)
        if row.effective_date == day or row.effective_date in exported
    ]


def _fund_codes(ledger: IncomeLedger, rows: list[PostingRow]) -> dict[str, tuple[str, str]]:
    chart = ledger.chart()
    codes = {}
    for fund_code in sorted({row.fund_code for row in rows if row.fund_code}):
        fund = chart.funds[fund_code]
        codes[fund_code] = (fund.ledger_code, fund.cost_centre)
    return codes


def _exports(ledger: IncomeLedger) -> GeneralLedgerExports:
    try:
        found = ledger.repository.get(GeneralLedgerExports.create_id())
    except AggregateNotFoundError:
        return GeneralLedgerExports.open(actor="system")
    assert isinstance(found, GeneralLedgerExports)
    return found


def _record(ledger: IncomeLedger, export: DayExport) -> dict[str, Any]:
    closed = calendar(ledger).close_of(export.export_date)
    return export.to_dict() | {"closed_period": closed.period.label if closed else None}


def parse_control_codes(text: str) -> dict[str, str]:
    """LEDGER_GL_CONTROL_CODES: a JSON object of role (or role:channel) to GL code."""
    if not text.strip():
        return {}
    try:
        codes = json.loads(text)
    except ValueError:
        codes = None
    roles = ", ".join(DEFAULT_CONTROL_CODES)
    if not isinstance(codes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in codes.items()
    ):
        raise InvalidRequest(
            'LEDGER_GL_CONTROL_CODES must be a JSON object of codes, like {"cash": "1100", '
            f'"cash:govuk_pay": "1105"}}; its keys are {roles}, or one of them:CHANNEL'
        )
    unknown = sorted(k for k in codes if k.split(":", 1)[0] not in DEFAULT_CONTROL_CODES)
    if unknown:
        raise InvalidRequest(
            f"LEDGER_GL_CONTROL_CODES has unknown keys {unknown}: use {roles}, or ROLE:CHANNEL"
        )
    return {key: value.strip() for key, value in codes.items()}
