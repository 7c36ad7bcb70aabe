"""Daily income files: parsing them into lines, and the import batch that records a file.

A file is taken whole or not at all: parsing collects every bad line's number and reason
and refuses the file with all of them, so a person fixes the file once. The batch's id is
derived from the file's SHA-256, so the same file imported twice collides in the event store
and records nothing the second time.

Formats:
- `allpay`: the Allpay/PayPoint/Post Office fixed-width file (layout in README, "A day's
  files"): detail lines, a blank line, then trailers `Total Amount Updated onto System:`
  and `Total Transactions updated onto System:` that must match the details.
- `csv`: a header row `channel,amount,reference,received_date[,external_id][,fund_code]`,
  amounts in pounds ("12.50"), dates as YYYY-MM-DD (UK dates); control totals come from
  the person importing it (expected total and count), not from the file.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.cards import reject_control_characters, require_text
from domain.errors import (
    CsvControlTotalsMissing,
    ImportLineNotFound,
    ImportRefused,
    InvalidEffectiveDate,
    InvalidRequest,
    LedgerError,
    LineNotChecked,
    LineNotLinked,
    LineNotToCheck,
    NothingToReverse,
)
from domain.funds import LEDGER_NAMESPACE
from domain.limits import (
    EARLIEST_BUSINESS_MOMENT,
    UK,
    require_length,
    uk_day_start,
)
from domain.money import pence_to_pounds, pounds_to_pence
from domain.payment import Channel, PaymentStatus, parse_choice

# A file is recorded in one transaction, its receipts and its batch event (one line entry
# per money line) together: this bounds that transaction, the memory a file takes and the
# batch event's size. A bank's or Allpay's day fits; a longer file is split by the sender.
MAX_IMPORT_LINES = 100_000
MAX_FILE_NAME_LENGTH = 255
# How many bad lines an error message spells out; the error's `problems` holds them all.
MAX_PROBLEMS_IN_MESSAGE = 20
EMPTY_FILE = "the file is empty or holds only blank lines: ask its sender for the file again"


class ImportFormat(StrEnum):
    ALLPAY = "allpay"
    CSV = "csv"
    # Bank statements (domain.statements): their balances are their control totals.
    CAMT053 = "camt053"
    BAI2 = "bai2"
    MT940 = "mt940"

    @classmethod
    def parse(cls, value: str) -> ImportFormat:
        return parse_choice(cls, value, "file format", InvalidRequest)


class LineKind(StrEnum):
    RECEIPT = "receipt"
    # Allpay `C`: money Allpay adjusts, not a payer's payment: held in suspense for an officer.
    CASH_ADJUSTMENT = "cash_adjustment"
    # Allpay `Q`: a cheque taken earlier bounced: the earlier receipt is reversed.
    RETURNED_CHEQUE = "returned_cheque"
    # A bank statement's returned direct debit: the earlier collection's receipt is reversed.
    DIRECT_DEBIT_RETURN = "direct_debit_return"
    # A bank statement's money paid out: linked when it is a card provider's negative
    # payout (refunds above the day's payments), else left out of the batch.
    PAYOUT_DEBIT = "payout_debit"


# Allpay payment types and the channel their money came through.
ALLPAY_TYPES: dict[str, tuple[str, Channel, LineKind]] = {
    "P": ("Post Office", Channel.ALLPAY, LineKind.RECEIPT),
    "T": ("PayPoint", Channel.PAYPOINT, LineKind.RECEIPT),
    "Z": ("Payzone", Channel.PAYPOINT, LineKind.RECEIPT),
    "N": ("IVR/desktop", Channel.TELEPHONE, LineKind.RECEIPT),
    "B": ("bills online", Channel.ALLPAY, LineKind.RECEIPT),
    "C": ("cash adjustment", Channel.ALLPAY, LineKind.CASH_ADJUSTMENT),
    "Q": ("returned cheque", Channel.ALLPAY, LineKind.RETURNED_CHEQUE),
}


@dataclass(frozen=True)
class LineProblem:
    line_number: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line_number, "reason": self.reason}


@dataclass(frozen=True)
class ImportLine:
    """One money line of a file, checked for its shape (the ledger's rules come later)."""

    line_number: int
    kind: LineKind
    channel: Channel
    amount_pence: int
    reference: str
    received_at: datetime
    payment_type: str | None = None
    source_code: str | None = None
    external_id: str | None = None
    fund_code: str | None = None
    # What a bank statement said of the line (type code, bank reference, dates, narrative),
    # kept with the receipt as its provider details.
    details: dict[str, Any] | None = None


@dataclass(frozen=True)
class ParsedFile:
    """A file's well-formed money lines, its control totals, and what is wrong with it.

    The file may be recorded only when `problems` is empty; the ledger's rules add theirs
    for the well-formed lines first, so that one refusal names every bad line."""

    file_format: ImportFormat
    lines: tuple[ImportLine, ...]
    line_count: int
    control_total_pence: int | None
    control_count: int | None
    problems: tuple[LineProblem, ...] = ()


def refuse(problems: list[LineProblem]) -> ImportRefused:
    """The error that refuses a whole file, naming every bad line."""
    shown = "; ".join(
        f"line {p.line_number}: {p.reason}" if p.line_number else p.reason
        for p in problems[:MAX_PROBLEMS_IN_MESSAGE]
    )
    more = len(problems) - MAX_PROBLEMS_IN_MESSAGE
    tail = f"; and {more} more" if more > 0 else ""
    return ImportRefused(
        f"the file was refused whole, nothing was recorded: {shown}{tail}. Fix the file and "
        "import it again",
        problems,
    )


def decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise refuse(
            [LineProblem(0, f"the file is not UTF-8 text (byte {error.start}); save it as UTF-8")]
        ) from None


def batch_id_for(sha256: str) -> UUID:
    """The same file (the same bytes) always maps to the same batch."""
    return uuid5(LEDGER_NAMESPACE, f"import-batch/{sha256}")


UTF8_BOM = b"\xef\xbb\xbf"
# What a blank final line may hold besides its line ending.
_BLANK = b" \t\n\x0b\x0c"


def normalised_content(content: bytes) -> bytes:
    """A file's content whatever re-saved it: without a UTF-8 byte order mark, every line
    ending (CRLF, CR, LF, mixed in one file) as LF, and without its final newlines and blank
    (whitespace-only) final lines. Every format reads these forms alike (the text is
    decoded as utf-8-sig, Allpay's lines split on any line ending, a CSV's rows too and its
    blank rows skipped, XML reads every line ending as LF), so two files of one normalised
    content are the same day's income: `content_sha256` names it."""
    text = content.removeprefix(UTF8_BOM).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    end = len(text.rstrip(_BLANK))
    if end == 0:
        return b""
    # Up to the line ending after the last character that is not blank: the last line with
    # text keeps its own trailing spaces (a fixed-width line's columns).
    cut = text.find(b"\n", end)
    return text if cut == -1 else text[:cut]


def content_sha256(content: bytes) -> str:
    """The SHA-256 of the file's normalised content (`normalised_content`)."""
    return hashlib.sha256(normalised_content(content)).hexdigest()


def resaved_batch_ids(content: bytes, sha256: str) -> list[UUID]:
    """The batches the same file would have made re-saved otherwise: with the other line
    endings (LF, CRLF), with a final newline added or removed, and with a UTF-8 byte order
    mark added or removed, as editors and mail clients re-save a file. The copy is the same
    day's income, so it must be found imported, while every id stays that of the exact
    bytes (`sha256`; existing ledgers keep theirs): these ids are only looked up, never
    given. They find imports recorded before a file's content was claimed
    (FileContentClaim), which finds every copy imported since, mixed line endings too."""
    text = content.removeprefix(UTF8_BOM).replace(b"\r\n", b"\n")
    body = text.removesuffix(b"\n")
    # The forms are the text, and it with one final newline more or (if it has one) fewer:
    # the body followed by up to `most` newlines, each form hashed on from the body's hash;
    # each with and without a byte order mark.
    most = 2 if text.endswith(b"\n") else 1
    ids = set()
    for newline, stem in ((b"\n", body), (b"\r\n", body.replace(b"\n", b"\r\n"))):
        for start in (b"", UTF8_BOM):
            stem_hash = hashlib.sha256(start)
            stem_hash.update(stem)
            for count in range(most + 1):
                form_hash = stem_hash.copy()
                form_hash.update(newline * count)
                ids.add(batch_id_for(form_hash.hexdigest()))
    ids.discard(batch_id_for(sha256))
    return sorted(ids)


def line_external_id(sha256: str, line_number: int) -> str:
    """A line's receipt id: from the file and the line, so a re-import is a no-op."""
    return f"file:{sha256}:{line_number}"


def check_file_name(file_name: str) -> str:
    name = file_name.strip() or "unnamed"
    require_length("file name", name, MAX_FILE_NAME_LENGTH)
    reject_control_characters("file name", name)
    return name


def parse_file(
    text: str,
    file_format: ImportFormat,
    *,
    expect_total_pence: int | None = None,
    expect_count: int | None = None,
    now: datetime | None = None,
) -> ParsedFile:
    """A file's money lines and control totals, with every problem of its shape."""
    if file_format is ImportFormat.ALLPAY:
        if expect_total_pence is not None or expect_count is not None:
            raise InvalidRequest(
                "an Allpay file carries its own control totals in its trailer: leave out "
                "the expected total and count"
            )
        return parse_allpay(text, now=now)
    return parse_csv(text, expect_total_pence, expect_count, now=now)


# ---- Allpay fixed width -------------------------------------------------------------------

ALLPAY_DETAIL_LENGTH = 43
ALLPAY_TOTAL_AMOUNT = "Total Amount Updated onto System:"
ALLPAY_TOTAL_COUNT = "Total Transactions updated onto System:"
_ALLPAY_AMOUNT = re.compile(r"^[0-9]+\.[0-9]{2}$")
_ALLPAY_DATE = re.compile(r"^[0-9]{2}/[0-9]{2}/[0-9]{4}$")
_ALLPAY_COUNT = re.compile(r"^[0-9]+$")
_CSV_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def parse_allpay(text: str, *, now: datetime | None = None) -> ParsedFile:
    """Detail lines until a line shorter than 2 characters (or the first trailer, when the
    blank line is missing), then the two trailers."""
    rows = text.splitlines()
    end = next(
        (index for index, row in enumerate(rows) if len(row) < 2 or _is_trailer(row)),
        len(rows),
    )
    problems: list[LineProblem] = []
    lines: list[ImportLine] = []
    days: dict[str, datetime] = {}
    for number, row in enumerate(rows[:end], 1):
        try:
            lines.append(_allpay_line(number, row, now, days))
        except LedgerError as error:
            problems.append(LineProblem(number, error.message))
    bad_details = bool(problems)
    total, count = _allpay_trailers(rows, end, problems)
    if not bad_details:  # the totals of a file with bad lines would only add noise
        _check_controls(lines, total, count, problems, "the trailer")
        if total is not None and total != sum(line.amount_pence for line in lines):
            problems.extend(_overflow_suspects(rows[:end]))
    return _parsed(ImportFormat.ALLPAY, lines, len(rows), total, count, problems)


def _overflow_suspects(rows: list[str]) -> list[LineProblem]:
    """Lines whose amount fills columns 24-32 right after a digit, named when the trailer's
    total disagrees with the lines. The layout cannot tell a 16-character reference ending
    in a digit with an amount such as 123456.78 (which fits, and is read so) from a
    15-character reference with an amount of a million pounds or more (1234567.89 needs 10
    columns: its first digit ends the reference and 234567.89 is read): the total decides."""
    return [
        LineProblem(
            number,
            f"amount {row[23:32]!r} fills columns 24-32 right after a digit: if it is a "
            f"million pounds or more ({row[22]}{row[23:32]}), it does not fit the layout's "
            "columns. Record it by hand and take it out of the file",
        )
        for number, row in enumerate(rows, 1)
        if len(row) > 23 and row[22].isdigit() and row[23] != " "
    ]


def _is_trailer(row: str) -> bool:
    return row.startswith((ALLPAY_TOTAL_AMOUNT, ALLPAY_TOTAL_COUNT))


def _allpay_line(
    number: int, row: str, now: datetime | None, days: dict[str, datetime]
) -> ImportLine:
    """One detail line; `days` keeps each date text's checked time, read once a file (a
    day's file holds a few dates over thousands of lines)."""
    reject_control_characters("the line", row)
    if len(row) < ALLPAY_DETAIL_LENGTH:
        raise InvalidRequest(
            f"a detail line must be at least {ALLPAY_DETAIL_LENGTH} characters, this one has "
            f"{len(row)}"
        )
    reference = row[11:23] if row[7:11] == "BERN" else row[7:23]
    amount_text = row[23:32].strip()
    if not _ALLPAY_AMOUNT.match(amount_text):
        raise InvalidRequest(
            f"amount {amount_text!r} (columns 24-32) is not pounds and pence like 60.00"
        )
    payment_type = row[32]
    if payment_type not in ALLPAY_TYPES:
        known = ", ".join(ALLPAY_TYPES)
        raise InvalidRequest(f"payment type {payment_type!r} (column 33) is not one of {known}")
    _, channel, kind = ALLPAY_TYPES[payment_type]
    # What pounds_to_pence reads from the digits, a point and two digits matched above.
    amount = int(amount_text[:-3]) * 100 + int(amount_text[-2:])
    if amount <= 0:
        raise InvalidRequest("the amount must be more than zero")
    return ImportLine(
        line_number=number,
        kind=kind,
        channel=channel,
        amount_pence=amount,
        reference=reference.strip(),
        received_at=days.get(row[33:43]) or _allpay_day(row[33:43], now, days),
        payment_type=payment_type,
        source_code=row[0:7].strip() or None,
    )


def _allpay_day(text: str, now: datetime | None, days: dict[str, datetime]) -> datetime:
    days[text] = _received_at(_allpay_date(text), now)
    return days[text]


def _allpay_date(text: str) -> date:
    try:
        if not _ALLPAY_DATE.match(text):
            raise ValueError
        # What strptime("%d/%m/%Y") reads, without its per-call format parsing.
        return date(int(text[6:10]), int(text[3:5]), int(text[0:2]))
    except ValueError:
        raise InvalidRequest(
            f"date {text!r} (columns 34-43) is not a date like 30/06/2022"
        ) from None


def _allpay_trailers(
    rows: list[str], after: int, problems: list[LineProblem]
) -> tuple[int | None, int | None]:
    """The control total (pence) and count from the trailer lines after the details."""
    total = count = None
    for number, row in enumerate(rows[after:], after + 1):
        # The value is all that follows the label: a value out of its columns (34-51, or
        # 40-57) was cut, "...System:120.00" read as 20.00.
        if row.startswith(ALLPAY_TOTAL_AMOUNT):
            value = row[len(ALLPAY_TOTAL_AMOUNT) :].strip()
            if _ALLPAY_AMOUNT.match(value):
                total = pounds_to_pence(value)
            else:
                problems.append(LineProblem(number, f"total amount {value!r} is not like 120.00"))
        elif row.startswith(ALLPAY_TOTAL_COUNT):
            value = row[len(ALLPAY_TOTAL_COUNT) :].strip()
            # str.isdigit() takes "²" (which int() refuses: an unexpected error) and other
            # scripts' digits.
            if _ALLPAY_COUNT.match(value):
                count = int(value)
            else:
                problems.append(LineProblem(number, f"total count {value!r} is not a number"))
        elif row.strip():
            problems.append(
                LineProblem(number, "after the details only the two total lines may follow")
            )
    if total is None:
        problems.append(LineProblem(0, f"the trailer has no '{ALLPAY_TOTAL_AMOUNT}' line"))
    if count is None:
        problems.append(LineProblem(0, f"the trailer has no '{ALLPAY_TOTAL_COUNT}' line"))
    return total, count


# ---- CSV ----------------------------------------------------------------------------------

CSV_REQUIRED = ("channel", "amount", "reference", "received_date")
CSV_OPTIONAL = ("external_id", "fund_code")


def parse_csv(
    text: str,
    expect_total_pence: int | None,
    expect_count: int | None,
    *,
    now: datetime | None = None,
) -> ParsedFile:
    """A header row, then one receipt per row; control totals come from the importer."""
    if expect_total_pence is None or expect_count is None:
        raise CsvControlTotalsMissing(
            "a CSV file has no trailer: give the expected total and count of its receipts "
            "(--expect-total 12.50 --expect-count 3; HTTP expect_total_pence, expect_count)"
        )
    rows = list(csv.reader(io.StringIO(text, newline="")))
    problems: list[LineProblem] = []
    header = [name.strip().lower() for name in rows[0]] if rows else []
    missing = [name for name in CSV_REQUIRED if name not in header]
    unknown = [name for name in header if name not in CSV_REQUIRED + CSV_OPTIONAL]
    if missing or unknown or len(set(header)) != len(header):
        allowed = ", ".join(CSV_REQUIRED + CSV_OPTIONAL)
        raise refuse(
            [LineProblem(1, f"the header row must name the columns {allowed} (each once)")]
        )
    lines: list[ImportLine] = []
    for number, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            lines.append(_csv_line(number, dict(zip(header, row, strict=False)), len(row), now))
        except LedgerError as error:
            problems.append(LineProblem(number, error.message))
    _check_duplicate_ids(lines, problems)
    if not problems:  # the totals of a file with bad lines would only add noise
        _check_controls(lines, expect_total_pence, expect_count, problems, "the expected")
    return _parsed(ImportFormat.CSV, lines, len(rows), expect_total_pence, expect_count, problems)


def _csv_line(number: int, cells: dict[str, str], width: int, now: datetime | None) -> ImportLine:
    if width != len(cells) or any(cells.get(name) is None for name in CSV_REQUIRED):
        raise InvalidRequest("the row does not have one value per column of the header")
    for name, cell in cells.items():
        reject_control_characters(name, cell)
    amount = pounds_to_pence(cells["amount"])
    if amount <= 0:
        raise InvalidRequest("the amount must be more than zero")
    try:
        text = cells["received_date"].strip()
        # date.fromisoformat also takes 20261130 and week dates (2026-W48-1).
        if not _CSV_DATE.match(text):
            raise ValueError
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"received_date {cells['received_date']!r} is not a date like 2026-03-31"
        ) from None
    return ImportLine(
        line_number=number,
        kind=LineKind.RECEIPT,
        channel=Channel.parse(cells["channel"]),
        amount_pence=amount,
        reference=cells["reference"].strip(),
        received_at=_received_at(day, now),
        external_id=(cells.get("external_id") or "").strip() or None,
        fund_code=(cells.get("fund_code") or "").strip().upper() or None,
    )


def _check_duplicate_ids(lines: list[ImportLine], problems: list[LineProblem]) -> None:
    seen: dict[tuple[Channel, str], int] = {}
    for line in lines:
        if line.external_id is None:
            continue
        key = (line.channel, line.external_id)
        if key in seen:
            problems.append(
                LineProblem(
                    line.line_number,
                    f"external_id {line.external_id!r} repeats line {seen[key]}'s",
                )
            )
        seen.setdefault(key, line.line_number)


# ---- shared -------------------------------------------------------------------------------


def _received_at(day: date, now: datetime | None) -> datetime:
    """A file's date is a UK business day: its money counts from the start of that day.

    Refused in the file's own terms, a day: one after today's UK date, whatever the time of
    day (the clock skew allowed a moment, CLOCK_SKEW, is no reason to take tomorrow's file
    five minutes before midnight), or one before 2000."""
    today = (now or datetime.now(UTC)).astimezone(UK).date()
    earliest = EARLIEST_BUSINESS_MOMENT.date()
    if day > today:
        raise InvalidEffectiveDate(
            f"the date {day.isoformat()} is later than today ({today.isoformat()}, UK): a "
            "file lists money already received; give the UK day it was received, from "
            f"{earliest.isoformat()} to today"
        )
    if day < earliest:
        raise InvalidEffectiveDate(
            f"the date {day.isoformat()} is before 2000: a file lists money already "
            f"received; give the UK day it was received, from {earliest.isoformat()} to today"
        )
    return uk_day_start(day)


def _check_controls(
    lines: list[ImportLine],
    total_pence: int | None,
    count: int | None,
    problems: list[LineProblem],
    source: str,
) -> None:
    actual_total = sum(line.amount_pence for line in lines)
    if total_pence is not None and total_pence != actual_total:
        problems.append(
            LineProblem(
                0,
                f"{source} total {pence_to_pounds(total_pence)} does not match the lines, "
                f"which add up to {pence_to_pounds(actual_total)}",
            )
        )
    if count is not None and count != len(lines):
        problems.append(
            LineProblem(0, f"{source} count {count} does not match the {len(lines)} money lines")
        )


def _parsed(
    file_format: ImportFormat,
    lines: list[ImportLine],
    line_count: int,
    total_pence: int | None,
    count: int | None,
    problems: list[LineProblem],
) -> ParsedFile:
    if len(lines) > MAX_IMPORT_LINES:
        problems.append(
            LineProblem(0, f"a file holds at most {MAX_IMPORT_LINES} money lines; split it")
        )
    if not problems and all(line.kind is LineKind.PAYOUT_DEBIT for line in lines):
        problems.append(LineProblem(0, "the file holds no money lines"))
    return ParsedFile(file_format, tuple(lines), line_count, total_pence, count, tuple(problems))


def received_at_for(day: date, now: datetime | None = None) -> datetime:
    """When a line dated `day` (a UK business day) counts as received."""
    return _received_at(day, now)


def finish_parsed(
    file_format: ImportFormat,
    lines: list[ImportLine],
    line_count: int,
    total_pence: int | None,
    count: int | None,
    problems: list[LineProblem],
) -> ParsedFile:
    """A parsed file with the limits every format shares (other formats' parsers)."""
    return _parsed(file_format, lines, line_count, total_pence, count, problems)


# ---- the batch ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StatementLink:
    """A bank statement line that paid in receipts already recorded: which, and by what rule
    (application.reconciliation)."""

    rule: str
    matched_payment_ids: tuple[str, ...]
    matched: str  # what was matched, in words
    settled_day: str | None = None  # a card payout: the settlement day it paid in (ISO)
    matched_batch_id: str | None = None  # an import's total: that import
    # several imports' totals together (a weekend's files paid in on Monday): those imports
    matched_batch_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        stored: dict[str, Any] = {
            "rule": self.rule,
            "matched_payment_ids": list(self.matched_payment_ids),
            "matched": self.matched,
        }
        if self.settled_day is not None:
            stored["settled_day"] = self.settled_day
        if self.matched_batch_id is not None:
            stored["matched_batch_id"] = self.matched_batch_id
        if self.matched_batch_ids:
            stored["matched_batch_ids"] = list(self.matched_batch_ids)
        return stored

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StatementLink:
        return cls(
            data["rule"],
            tuple(data["matched_payment_ids"]),
            data["matched"],
            data.get("settled_day"),
            data.get("matched_batch_id"),
            tuple(data.get("matched_batch_ids", ())),
        )


UNMATCHED = "unmatched"


@dataclass(frozen=True)
class ImportedLine:
    """What became of one money line of an imported file; the batch's Imported event keeps
    one per line.

    Events store it as a plain dict (`to_dict`), the form every stored event already has:
    `import_rule` on every line but a statement's link (lines stored before import rules
    existed have none: they read as None), `booking_date` on a statement's lines only, the
    link's keys on a linked line only, and last `fund_code` on a line whose receipt the
    import allocated (lines stored before it was kept have none: they read as None).
    """

    line: int
    kind: str  # LineKind
    # recorded, known (recorded before; a return: taken back before), reversed (returned),
    # reconciled, or unmatched (a debit naming GOV.UK Pay's payout that matched nothing
    # yet: it may pay refunds recorded later, application.reconciliation.link_counted_twice)
    outcome: str
    payment_id: str | None  # the receipt the line recorded or reversed; None when linked
    channel: str
    payment_type: str | None
    reference: str
    amount_pence: int
    status: str | None  # the receipt's status then; None when linked
    import_rule: dict[str, Any] | None = None
    booking_date: str | None = None  # a bank statement's line: its booking date (ISO)
    link: StatementLink | None = None
    fund_code: str | None = None  # the fund(s) the import allocated its receipt to
    # A statement's returned direct debit: what identifies it at the bank (account, booking
    # date, bank reference, amount: statements.statement_line_id); lines stored before it
    # was kept have none.
    bank_line_id: str | None = None

    @property
    def is_new_receipt(self) -> bool:
        return self.outcome == "recorded" and self.kind == LineKind.RECEIPT

    @property
    def is_open_debit(self) -> bool:
        """A payout debit kept unlinked: its money out explains nothing yet."""
        return self.outcome == UNMATCHED and self.kind == LineKind.PAYOUT_DEBIT

    @property
    def sent_to_a_fund_by_a_rule(self) -> bool:
        """A new receipt an import rule allocated (in full or in part), not the line's own
        reference: the rule may have taken another channel's money by its narrative, so a
        person checks it (ImportBatch.check_line)."""
        return (
            self.is_new_receipt
            and self.import_rule is not None
            and self.status in (PaymentStatus.ALLOCATED.value, PaymentStatus.PART_ALLOCATED.value)
        )

    @property
    def awaits_link(self) -> bool:
        """Whether a later linking run may still link the line (ImportBatch.link_line)."""
        return self.is_new_receipt or self.is_open_debit

    def to_dict(self) -> dict[str, Any]:
        stored: dict[str, Any] = {
            "line": self.line,
            "kind": self.kind,
            "outcome": self.outcome,
            "payment_id": self.payment_id,
            "channel": self.channel,
            "payment_type": self.payment_type,
            "reference": self.reference,
            "amount_pence": self.amount_pence,
            "status": self.status,
        }
        if self.link is None:
            stored["import_rule"] = self.import_rule
        if self.booking_date is not None or self.link is not None:
            stored["booking_date"] = self.booking_date
        if self.link is not None:
            stored |= self.link.to_dict()
        if self.fund_code is not None:
            stored["fund_code"] = self.fund_code
        if self.bank_line_id is not None:
            stored["bank_line_id"] = self.bank_line_id
        return stored

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportedLine:
        return cls(
            data["line"],
            data["kind"],
            data["outcome"],
            data["payment_id"],
            data["channel"],
            data["payment_type"],
            data["reference"],
            data["amount_pence"],
            data["status"],
            data.get("import_rule"),
            data.get("booking_date"),
            StatementLink.from_dict(data) if "rule" in data else None,
            data.get("fund_code"),
            data.get("bank_line_id"),
        )


def imported_lines_from(stored: list[dict[str, Any]]) -> tuple[ImportedLine, ...]:
    return tuple(ImportedLine.from_dict(line) for line in stored)


@dataclass(frozen=True)
class BatchTotals:
    receipts_count: int
    receipts_pence: int
    returned_cheques_count: int


def batch_totals(lines: tuple[ImportedLine, ...]) -> BatchTotals:
    """What a batch's lines made: new receipts (count, pence) and returned cheques."""
    return _totals([(line.outcome, line.amount_pence) for line in lines])


def _totals(outcomes: list[tuple[str, int]]) -> BatchTotals:
    """From each line's outcome and amount."""
    recorded = [pence for outcome, pence in outcomes if outcome == "recorded"]
    return BatchTotals(
        len(recorded), sum(recorded), sum(1 for outcome, _ in outcomes if outcome == "reversed")
    )


class ImportBatch(Aggregate):
    """One imported file: who brought it, what it held, the receipts it made.

    Its events move no money themselves (the receipts' events do); they are the file's
    record in the ledger's history.
    """

    class Imported(Aggregate.Created):
        file_name: str
        file_format: str
        sha256: str
        line_count: int
        control_total_pence: int
        control_count: int
        # Stored as plain dicts (ImportedLine.to_dict); read them as `imported_lines`.
        lines: list[dict[str, Any]]
        actor: str

        @property
        def imported_lines(self) -> tuple[ImportedLine, ...]:
            return imported_lines_from(self.lines)

    class Reversed(Aggregate.Event):
        reason: str
        actor: str
        # The receipts whose remaining money was reversed, and how much in all.
        payment_ids: list[str]
        amount_pence: int

        def apply(self, batch: ImportBatch) -> None:
            batch.reversed_by = self.actor
            batch.reversal_reason = self.reason
            batch.reversed_pence = self.amount_pence

    class LineLinked(Aggregate.Event):
        """A statement line recorded as its own receipt before the channel's record of the
        same money arrived, linked to that record afterwards (application.reconciliation):
        the link, and the line's own receipt, reversed with it as counted twice. A payout
        debit kept unmatched (ImportedLine.is_open_debit) has no receipt: None."""

        line: int
        link: dict[str, Any]  # StatementLink.to_dict
        reversed_payment_id: str | None
        reason: str
        actor: str

        def apply(self, batch: ImportBatch) -> None:
            batch.late_links[self.line] = StatementLink.from_dict(self.link)

    class LinkUndone(Aggregate.Event):
        """A person said a line's link was wrong (or its statement is being reversed): the
        link no longer stands, and the pairing it made is kept as rejected (never made
        again without a person's say). `restored_payment_id` is the line's own receipt, its
        counted-twice reversal undone in the same transaction (None for a line linked at
        import, which has no receipt of its own)."""

        line: int
        link: dict[str, Any]  # StatementLink.to_dict
        restored_payment_id: str | None
        reason: str
        actor: str

        def apply(self, batch: ImportBatch) -> None:
            batch.late_links.pop(self.line, None)
            undone = batch.undone_links.setdefault(self.line, [])
            undone.append(StatementLink.from_dict(self.link))

    class LineChecked(Aggregate.Event):
        """A person checked a statement line an import rule sent to a fund and says it is
        right (the payer's money for that fund, not another channel's counted twice): it
        leaves the exceptions report (application.reconciliation.check_line)."""

        line: int
        reason: str
        actor: str

        def apply(self, batch: ImportBatch) -> None:
            batch.checked_lines[self.line] = {
                "checked_by": self.actor,
                "reason": self.reason,
                "checked_at": self.timestamp.isoformat(),
            }

    class LineCheckUndone(Aggregate.Event):
        """A person said a line's check was wrong: it is back on the exceptions report; the
        check stays in the history (ImportBatch.checks_undone)."""

        line: int
        reason: str
        actor: str

        def apply(self, batch: ImportBatch) -> None:
            undone = batch.checked_lines.pop(self.line)
            undone |= {
                "undone_by": self.actor,
                "undo_reason": self.reason,
                "undone_at": self.timestamp.isoformat(),
            }
            batch.checks_undone.setdefault(self.line, []).append(undone)

    @staticmethod
    def create_id(sha256: str) -> UUID:
        return batch_id_for(sha256)

    def __init__(
        self,
        file_name: str,
        file_format: str,
        sha256: str,
        line_count: int,
        control_total_pence: int,
        control_count: int,
        lines: list[dict[str, Any]],
        actor: str,
    ) -> None:
        self.file_name = file_name
        self.file_format = file_format
        self.sha256 = sha256
        self.line_count = line_count
        self.control_total_pence = control_total_pence
        self.control_count = control_count
        # The lines as the event stores them; `lines` makes their entries when first read,
        # not as the import records 100,000 of them (totals are read of these).
        self.stored_lines = lines
        self.imported_by = actor
        self.reversed_by: str | None = None
        self.reversal_reason: str | None = None
        self.reversed_pence = 0
        self.late_links: dict[int, StatementLink] = {}
        # Links undone (LinkUndone), by line: the pairings a person rejected.
        self.undone_links: dict[int, list[StatementLink]] = {}
        # Lines a person checked (LineChecked) and whose check stands, by line: who, why,
        # when; and the checks undone since (LineCheckUndone), oldest first.
        self.checked_lines: dict[int, dict[str, str]] = {}
        self.checks_undone: dict[int, list[dict[str, str]]] = {}

    @classmethod
    def record(
        cls,
        parsed: ParsedFile,
        *,
        file_name: str,
        sha256: str,
        entries: list[dict[str, Any]],
        actor: str,
    ) -> ImportBatch:
        """The batch of a file whose lines' entries are `entries`, as the event stores them
        (ImportedLine.to_dict), in line order: a large file's are made in the import's
        worker processes, so that 100,000 of them are not built, sent and taken apart
        again by the importing process (application.imports)."""
        return cls._create(
            cls.Imported,
            id=cls.create_id(sha256),
            file_name=check_file_name(file_name),
            file_format=parsed.file_format.value,
            sha256=sha256,
            line_count=parsed.line_count,
            control_total_pence=parsed.control_total_pence,
            control_count=parsed.control_count,
            lines=entries,
            actor=actor,
        )

    @functools.cached_property
    def lines(self) -> tuple[ImportedLine, ...]:
        return imported_lines_from(self.stored_lines)

    @property
    def totals(self) -> BatchTotals:
        return _totals([(line["outcome"], line["amount_pence"]) for line in self.stored_lines])

    @property
    def receipt_ids(self) -> list[str]:
        """The receipts this batch recorded (not the earlier ones it reversed)."""
        return [line.payment_id for line in self.lines if line.outcome == "recorded"]

    def reverse(
        self, *, payment_ids: list[str], amount_pence: int, actor: str, reason: str
    ) -> None:
        """Mark the import reversed; its links, if any, are undone first (undo_link)."""
        self.require_not_reversed()
        undoing = any(isinstance(e, self.LinkUndone) for e in self.pending_events)
        if amount_pence == 0 and not undoing:
            raise NothingToReverse(
                "nothing of this import's receipts remains to reverse: they were refunded or "
                "reversed already (returned cheques it recorded cannot be undone)"
            )
        self.trigger_event(
            self.Reversed,
            reason=require_text("reason", reason, required=True),
            actor=actor,
            payment_ids=payment_ids,
            amount_pence=amount_pence,
        )

    def require_not_reversed(self) -> None:
        if self.reversed_by is not None:
            raise NothingToReverse(
                f"this import was already reversed by {self.reversed_by} ({self.reversal_reason})"
            )

    def link_line(self, line: int, link: StatementLink, *, actor: str, reason: str) -> str | None:
        """Link a line that became a new receipt (or a payout debit kept unmatched) to the
        records it paid in; returns that receipt's id, which the caller reverses in the same
        transaction (None for a debit: it has no receipt)."""
        found = next((entry for entry in self.lines if entry.line == line), None)
        if found is None or not found.awaits_link:
            raise InvalidRequest(f"line {line} of import {self.id} recorded nothing to link")
        if line in self.late_links or self.reversed_by is not None:
            raise NothingToReverse(
                f"line {line} of import {self.id} is already linked, or its import reversed"
            )
        self.trigger_event(
            self.LineLinked,
            line=line,
            link=link.to_dict(),
            reversed_payment_id=found.payment_id,
            reason=require_text("reason", reason, required=True),
            actor=actor,
        )
        return found.payment_id

    @property
    def standing_links(self) -> dict[int, StatementLink]:
        """Each line's link that still stands: made at import, or late (LineLinked), and
        not undone since."""
        at_import = {
            entry.line: entry.link
            for entry in self.lines
            if entry.link is not None and entry.line not in self.undone_links
        }
        return at_import | self.late_links

    def undo_link(self, line: int, *, actor: str, reason: str) -> tuple[StatementLink, str | None]:
        """Undo the link of `line`: returns the link, and the line's own receipt when it
        was linked late (the caller undoes its counted-twice reversal in the same
        transaction), else None (linked at import: it recorded no receipt)."""
        reason = require_text("reason", reason, required=True)
        found = next((entry for entry in self.lines if entry.line == line), None)
        if found is None:
            raise ImportLineNotFound(
                f"import {self.id} has no money line {line}; GET /imports/{self.id} lists its lines"
            )
        if self.reversed_by is not None:
            raise LineNotLinked(
                f"import {self.id} was reversed by {self.reversed_by}: its links were undone "
                "with it"
            )
        link = self.standing_links.get(line)
        if link is None:
            undone = "its link was undone already" if line in self.undone_links else ""
            raise LineNotLinked(
                f"line {line} of import {self.id} is not linked" + (f": {undone}" if undone else "")
            )
        restored = found.payment_id if line in self.late_links else None
        self.trigger_event(
            self.LinkUndone,
            line=line,
            link=link.to_dict(),
            restored_payment_id=restored,
            reason=reason,
            actor=actor,
        )
        return link, restored

    def check_line(self, line: int, *, actor: str, reason: str) -> None:
        """A person says a line an import rule sent to a fund is right (LineChecked).
        Refused for a line that is not one (a payer's own transfer a fund took by its
        reference needs no check; a line in suspense is decided by allocating it), one
        checked already, linked, or of a reversed import."""
        reason = require_text("reason", reason, required=True)
        found = self.line_entry(line)
        if self.reversed_by is not None:
            raise LineNotToCheck(
                f"import {self.id} was reversed by {self.reversed_by}: its lines need no check"
            )
        if line in self.checked_lines:
            by = self.checked_lines[line]["checked_by"]
            raise LineNotToCheck(f"line {line} of import {self.id} was checked already, by {by}")
        if not found.sent_to_a_fund_by_a_rule or line in self.standing_links:
            raise LineNotToCheck(
                f"line {line} of import {self.id} is not a line an import rule sent to a fund: "
                "only such a line waits for a person's check (a line in suspense is settled "
                "by allocating, refunding or reversing its receipt; a line a fund took by its "
                "reference, or a linked one, needs none)"
            )
        self.trigger_event(self.LineChecked, line=line, reason=reason, actor=actor)

    def undo_check(self, line: int, *, actor: str, reason: str) -> None:
        """A person says a line's check was wrong (LineCheckUndone): it waits for a person
        again."""
        reason = require_text("reason", reason, required=True)
        self.line_entry(line)
        if self.reversed_by is not None:
            raise LineNotChecked(
                f"import {self.id} was reversed by {self.reversed_by}: its lines are on no "
                "report; their checks stay in the history"
            )
        if line not in self.checked_lines:
            undone = ": its check was undone already" if line in self.checks_undone else ""
            raise LineNotChecked(f"line {line} of import {self.id} is not checked{undone}")
        self.trigger_event(self.LineCheckUndone, line=line, reason=reason, actor=actor)

    def line_entry(self, line: int) -> ImportedLine:
        """The money line numbered `line`; refused when the import has none."""
        found = next((entry for entry in self.lines if entry.line == line), None)
        if found is None:
            raise ImportLineNotFound(
                f"import {self.id} has no money line {line}; GET /imports/{self.id} lists its lines"
            )
        return found


class FileContentClaim(Aggregate):
    """A file's content taken by the import that recorded it (issue #10).

    Its id comes from the file's normalised content (`content_sha256`), not its bytes, and
    it is saved in the transaction that saves the batch. So of two copies of one file saved
    otherwise (other line endings, final newline or byte order mark: other bytes, other
    batch ids) imported at the same moment, the second to save collides with the first's
    claim in the event store, stores nothing, and is answered as the first. It is never
    released: a copy of a reversed import is answered as that import, as its exact bytes
    are. It moves no money."""

    class ContentClaimed(Aggregate.Created):
        batch_id: str
        content_sha256: str
        actor: str

    @staticmethod
    def create_id(content_sha256: str) -> UUID:
        return uuid5(LEDGER_NAMESPACE, f"import-content/{content_sha256}")

    def __init__(self, batch_id: str, content_sha256: str, actor: str) -> None:
        self.batch_id = batch_id
        self.content_sha256 = content_sha256
        self.actor = actor

    @classmethod
    def claim(cls, batch: ImportBatch, content_sha256: str) -> FileContentClaim:
        """The claim of `batch`'s file's content, saved with the batch."""
        return cls._create(
            cls.ContentClaimed,
            id=cls.create_id(content_sha256),
            batch_id=str(batch.id),
            content_sha256=content_sha256,
            actor=batch.imported_by,
        )
