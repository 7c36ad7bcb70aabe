"""The daily general-ledger journal for the council's finance system (docs/gl-export.md).

Pure: it takes the day's postings (rows made by `domain.postings.postings_for`, read from the
read model) and the codes to map them to, and makes balanced journal lines and their CSV.
Each export is an event on the one `domain.gl_exports.GeneralLedgerExports` record, keeping what the file was
made from (the read-model positions it covers and the codes used), so a re-export makes the
same bytes and a movement recorded late for an exported day goes into a later export as an
adjustment line, never into the old file.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from domain.errors import InvalidRequest
from domain.money import pence_to_pounds
from domain.postings import SUSPENSE, VAT_OUTPUT

# Control accounts (everything but a fund's income) take their codes from here unless the
# deployment says otherwise; `cash:<channel>` style keys give a channel its own code.
DEFAULT_CONTROL_CODES: dict[str, str] = {
    "cash": "CASH",
    "suspense": "SUSPENSE",
    "vat": "VAT-OUTPUT",
    "refunds": "REFUNDS",
    "reversals": "REVERSALS",
    "over_short": "OVER-SHORT",
    "clearing": "CLEARING",
    "card_fees": "CARD-FEES",
    "dispute_fees": "DISPUTE-FEES",
    "bank": "BANK",
}
ROLES = (
    "cash",
    "income",
    "vat",
    "suspense",
    "refunds",
    "reversals",
    "over_short",
    "clearing",
    "card_fees",
    "dispute_fees",
    "bank",
)
# Roles whose lines say the channel the money moved through.
CHANNEL_ROLES = (
    "cash",
    "refunds",
    "reversals",
    "over_short",
    "clearing",
    "card_fees",
    "dispute_fees",
)
COLUMNS = (
    "export_date",
    "line_type",
    "relates_to_date",
    "account_role",
    "gl_code",
    "cost_centre",
    "fund_code",
    "channel",
    "debit",
    "credit",
    "amount_pence",
)
JOURNAL = "journal"
ADJUSTMENT = "adjustment"


@dataclass(frozen=True)
class PostingRow:
    """One posting as the read model holds it."""

    account: str
    fund_code: str | None
    channel: str | None
    amount_pence: int
    effective_date: date


@dataclass(frozen=True)
class GlLine:
    export_date: date
    line_type: str
    relates_to_date: date
    account_role: str
    gl_code: str
    cost_centre: str
    fund_code: str
    channel: str
    amount_pence: int

    def cells(self) -> list[str]:
        debit = pence_to_pounds(self.amount_pence) if self.amount_pence > 0 else ""
        credit = pence_to_pounds(-self.amount_pence) if self.amount_pence < 0 else ""
        return [
            self.export_date.isoformat(),
            self.line_type,
            self.relates_to_date.isoformat(),
            self.account_role,
            self.gl_code,
            self.cost_centre,
            self.fund_code,
            self.channel,
            debit,
            credit,
            str(self.amount_pence),
        ]


def account_role(account: str) -> str:
    if account == SUSPENSE:
        return "suspense"
    if account == VAT_OUTPUT:
        return "vat"
    role = account.split(":", 1)[0]
    if role not in ROLES:
        raise ValueError(f"no general-ledger role for account {account!r}")
    return role


def journal_lines(
    export_date: date,
    rows: Iterable[PostingRow],
    fund_codes: Mapping[str, tuple[str, str]],
    control_codes: Mapping[str, str],
) -> list[GlLine]:
    """The day's postings summed per GL code, cost centre, fund and channel; a posting dated
    before `export_date` is an adjustment relating to its own day. Lines netting to nothing
    are left out. Every relates_to_date's lines sum to zero, as every event's postings do."""
    sums: dict[tuple[str, date, str, str, str, str, str], int] = defaultdict(int)
    for row in rows:
        role = account_role(row.account)
        kind = JOURNAL if row.effective_date == export_date else ADJUSTMENT
        if role == "income":
            assert row.fund_code is not None
            gl_code, cost_centre = fund_codes[row.fund_code]
        else:
            gl_code, cost_centre = control_code(control_codes, role, row.channel), ""
        fund = row.fund_code if role in ("income", "vat") else ""
        channel = row.channel if role in CHANNEL_ROLES else ""
        key = (kind, row.effective_date, role, gl_code, cost_centre, fund or "", channel or "")
        sums[key] += row.amount_pence
    lines = [
        GlLine(export_date, kind, day, role, gl_code, centre, fund, channel, amount)
        for (kind, day, role, gl_code, centre, fund, channel), amount in sums.items()
        if amount
    ]
    return sorted(
        lines,
        key=lambda line: (
            line.line_type != JOURNAL,
            line.relates_to_date,
            ROLES.index(line.account_role),
            line.gl_code,
            line.cost_centre,
            line.fund_code,
            line.channel,
        ),
    )


def control_code(codes: Mapping[str, str], role: str, channel: str | None) -> str:
    return codes.get(f"{role}:{channel}") or codes.get(role) or DEFAULT_CONTROL_CODES[role]


def to_csv(lines: Iterable[GlLine], columns: Sequence[tuple[str, str]] | None = None) -> bytes:
    """The CSV: every column under its own name, or `columns` as (header, column) pairs in
    the order a finance system wants them (see `parse_columns`)."""
    chosen = list(columns) if columns else [(name, name) for name in COLUMNS]
    where = [COLUMNS.index(column) for _, column in chosen]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([header for header, _ in chosen])
    for line in lines:
        cells = line.cells()
        writer.writerow([cells[index] for index in where])
    return buffer.getvalue().encode()


def parse_columns(text: str) -> list[tuple[str, str]] | None:
    """LEDGER_GL_COLUMNS: `Header=column,...` (or a bare column: its own name as header)."""
    if not text.strip():
        return None
    columns = []
    for entry in (part.strip() for part in text.split(",")):
        header, sep, column = entry.partition("=")
        header, column = header.strip(), (column if sep else header).strip()
        if column not in COLUMNS or not header:
            raise InvalidRequest(
                f"LEDGER_GL_COLUMNS entry {entry!r} is not HEADER=COLUMN with COLUMN one of "
                f"{', '.join(COLUMNS)}"
            )
        columns.append((header, column))
    if len({header for header, _ in columns}) != len(columns):
        raise InvalidRequest("LEDGER_GL_COLUMNS names a header twice")
    return columns
