"""Bank statements (ISO 20022 camt.053, BAI2, MT940) read into statement lines and balances.

Each parser gives the file's statements: per account and period, the opening and closing
booked balances and the lines in file order, every amount in minor units (int). Nothing here
decides what a line means to the ledger (application.imports does); a statement that does not
reconcile (opening + credits - debits != closing) is reported by `Statement.reconciles`, never
adjusted.

Why these parsers:
- camt.053 is XML: read with the standard library's ElementTree (no lxml or defusedxml is
  installed and the format needs neither). ElementTree expands entities declared in a DOCTYPE
  (the "billion laughs"), so a file with a DOCTYPE or ENTITY declaration is refused before it
  is parsed; camt.053 never needs one. Versions 001.02 to 001.08 share the elements read
  here; the namespace is ignored.
- BAI2 uses PyPI `bai2` (MoJ): it handles the funds-type variants of 16 records and 88
  continuations, which a hand-written reader gets wrong easily.
- MT940 uses PyPI `mt-940`: it knows the banks' `:86:` dialects. It keeps one set of
  balances for a whole file, so a file is split into its statements (at each `:20:`) first.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from functools import cache

from domain.errors import ImportRefused, InvalidRequest, LedgerError
from domain.imports import (
    ImportFormat,
    ImportLine,
    LineKind,
    LineProblem,
    ParsedFile,
    decode,
    finish_parsed,
    received_at_for,
    refuse,
)
from domain.limits import MAX_REFERENCE_LENGTH
from domain.money import pence_to_pounds
from domain.payment import Channel

# ISO 4217 currencies without minor units that a UK council's bank could plausibly send;
# every other currency has two decimals.
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "ISK", "CLP", "VND", "XOF", "XAF"})
MAX_NARRATIVE_LENGTH = 500


class Direction(StrEnum):
    CREDIT = "credit"
    DEBIT = "debit"


@dataclass(frozen=True)
class TxDetail:
    """One item of a batched camt entry: a breakdown only, the entry's amount counts."""

    amount_minor: int | None
    reference: str
    narrative: str


@dataclass(frozen=True)
class StatementLine:
    """One booked line: `line_number` counts statement lines in file order from 1."""

    line_number: int
    direction: Direction
    amount_minor: int
    currency: str
    booking_date: date | None
    value_date: date | None
    bank_reference: str
    narrative: str
    # The bank's type code as sent: BAI2 type (e.g. 399), MT940 `N...` code (e.g. NDDT),
    # camt Domain/Family/SubFamily (e.g. PMNT/RDDT/ESDD) or its proprietary code.
    type_code: str
    direct_debit: bool = False
    # camt RvslInd, MT940 RC/RD: the line takes back an earlier line.
    reversal: bool = False
    return_reason: str | None = None
    details: tuple[TxDetail, ...] = ()


@dataclass(frozen=True)
class Statement:
    statement_id: str
    account: str
    currency: str
    opening_minor: int | None
    closing_minor: int | None
    lines: tuple[StatementLine, ...]
    # When the file names no currency and `currency` is the format's default: which field
    # should name it (BAI2's group header), for the refusal to say.
    currency_unstated: str = ""

    @property
    def credits_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines if line.direction is Direction.CREDIT)

    @property
    def debits_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines if line.direction is Direction.DEBIT)

    @property
    def reconciles(self) -> bool | None:
        """None when the file states no balances to check against."""
        if self.opening_minor is None or self.closing_minor is None:
            return None
        return self.opening_minor + self.credits_minor - self.debits_minor == self.closing_minor


# A plain decimal (xs:decimal, as camt.053 writes amounts; MT940's and BAI2's are parsed
# already): ASCII digits, no exponent, no "Infinity" or "NaN", no "1_000", no Arabic-Indic
# digits, all of which Decimal() takes. 18 digits is camt.053's own bound (totalDigits).
_DECIMAL = re.compile(r"^[+-]?[0-9]{1,18}(?:\.[0-9]{0,18})?$", re.ASCII)


def to_minor(amount: Decimal | str, currency: str) -> int:
    """An amount in the currency's minor units; refuses one with more precision than that."""
    if isinstance(amount, Decimal) and amount.is_finite():
        text = format(amount, "f")
    else:
        text = str(amount).strip()
    if not _DECIMAL.match(text):
        raise InvalidRequest(f"amount {amount!r} is not a number like 1234.50")
    value = Decimal(text)
    exponent = 0 if currency.upper() in ZERO_DECIMAL_CURRENCIES else 2
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise InvalidRequest(f"amount {amount} has more decimals than {currency} has")
    return int(minor)


def _clip(text: str) -> str:
    return " ".join(text.split())[:MAX_NARRATIVE_LENGTH]


def _renumber(statements: list[Statement]) -> list[Statement]:
    """Number the lines across the whole file, so a problem names one line."""
    number = 0
    result = []
    for statement in statements:
        lines = []
        for line in statement.lines:
            number += 1
            lines.append(_with_number(line, number))
        result.append(_with_lines(statement, tuple(lines)))
    return result


def _with_number(line: StatementLine, number: int) -> StatementLine:
    return StatementLine(**{**line.__dict__, "line_number": number})


def _with_lines(statement: Statement, lines: tuple[StatementLine, ...]) -> Statement:
    return Statement(**{**statement.__dict__, "lines": lines})


# ---- camt.053 ---------------------------------------------------------------------------------

# ISO bank transaction code families of direct debits (issued by us, or received).
CAMT_DIRECT_DEBIT_FAMILIES = frozenset({"IDDT", "RDDT"})
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# An ISODateTime's date part is read: the rest must still be a time, not other text.
_ISO_DATE_TIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})?$"
)
_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_ENCODING = re.compile(r"""^\s*<\?xml[^>]*encoding\s*=\s*["']([^"']+)["']""")


def _require_plain_utf8_xml(content: bytes) -> None:
    """Refuse what could expand entities: a DOCTYPE or ENTITY declaration, looked for in
    the text; the text must be UTF-8 (as ISO 20022 requires) so that no other encoding
    can hide a declaration from the look."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest("the XML file is not UTF-8, as ISO 20022 requires") from None
    declared = _ENCODING.match(text)
    if declared and declared.group(1).strip().lower() not in ("utf-8", "utf8", "us-ascii"):
        raise InvalidRequest(
            f"the XML file declares encoding {declared.group(1)!r}: camt.053 is UTF-8"
        )
    if _DECLARATION.search(text):
        raise InvalidRequest(
            "the XML file declares a DOCTYPE or ENTITY, which camt.053 never needs and which "
            "could expand without limit: export the statement again without it"
        )


def parse_camt053(content: bytes) -> list[Statement]:
    _require_plain_utf8_xml(content)
    try:
        # Safe here: the content was checked to be UTF-8 without a DOCTYPE or ENTITY.
        root = ET.fromstring(content)  # noqa: S314
    except ET.ParseError as error:
        raise InvalidRequest(f"the file is not well-formed XML: {error}") from None
    _drop_namespaces(root)
    if root.tag != "Document" or _child(root, "BkToCstmrStmt") is None:
        raise InvalidRequest("the XML file is not a camt.053 statement (no BkToCstmrStmt)")
    statements: list[Statement] = []
    numbered = 0  # lines are numbered across the whole file, as `_renumber` numbers them
    for stmt in _path(root, "BkToCstmrStmt", "Stmt"):
        statements.append(_camt_statement(stmt, numbered))
        numbered += len(statements[-1].lines)
    return statements


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _drop_namespaces(root: ET.Element) -> None:
    """Every element's tag its local name, in one pass: the namespace is ignored (any
    version's, or none), and what follows finds children by plain name with ElementTree's
    own (C) find, not a Python comparison of every child's local name."""
    local: dict[str, str] = {}
    for element in root.iter():
        tag = element.tag
        name = local.get(tag)
        if name is None:
            name = local[tag] = _local(tag)
        element.tag = name


def _child(element: ET.Element | None, name: str) -> ET.Element | None:
    return None if element is None else element.find(name)


def _path(element: ET.Element | None, *names: str) -> list[ET.Element]:
    """Every element at the path (each step may repeat), in document order."""
    if element is None:
        return []
    found = [element]
    for name in names:
        found = [child for parent in found for child in parent.findall(name)]
    return found


def _first(element: ET.Element, names: tuple[str, ...]) -> ET.Element | None:
    """The first element at the path in document order (`_path`'s first): the first child
    of each step's first, unless a step finds none there and a later sibling may hold it."""
    found: ET.Element | None = element
    for step, name in enumerate(names):
        found = found.find(name)
        if found is None:
            every = _path(element, *names) if step else []
            return every[0] if every else None
    return found


def _text(element: ET.Element | None, *names: str) -> str:
    if element is None:
        return ""
    if len(names) == 1:  # ElementTree's findtext: "" for an element without text
        return (element.findtext(names[0]) or "").strip()
    found = _first(element, names)
    return (found.text or "").strip() if found is not None else ""


def _camt_date(element: ET.Element | None, name: str) -> date | None:
    text = _text(element, name, "Dt")
    if not text:
        text = _text(element, name, "DtTm")
        text = text[:10] if _ISO_DATE_TIME.match(text) else text
    if not text:
        return None
    try:
        if not _ISO_DATE.match(text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"the date {text!r} in {name} is not a date like 2026-03-31") from None


def _camt_amount(element: ET.Element | None) -> tuple[int, str] | None:
    if element is None:
        return None
    currency = element.get("Ccy", "").upper()
    minor = to_minor(element.text or "", currency)
    # ISO 20022 amounts are never negative (their side is CdtDbtInd): a "-25.00" credit was
    # read as a credit of minus £25.
    if minor < 0:
        raise InvalidRequest(
            f"amount {(element.text or '').strip()!r} has a minus sign: camt.053 writes "
            "amounts without one, the side in CdtDbtInd (CRDT or DBIT)"
        )
    return minor, currency


def _camt_statement(stmt: ET.Element, numbered: int) -> Statement:
    """One statement; its lines numbered on from the `numbered` lines before it."""
    account = _text(stmt, "Acct", "Id", "IBAN") or _text(stmt, "Acct", "Id", "Othr", "Id")
    currency = _text(stmt, "Acct", "Ccy").upper()
    name = f"statement {_text(stmt, 'Id') or '(no id)'}"
    balances: dict[str, int] = {}
    for balance in _path(stmt, "Bal"):
        code = _text(balance, "Tp", "CdOrPrtry", "Cd")
        try:
            amount = _camt_amount(_child(balance, "Amt"))
        except InvalidRequest as error:
            raise InvalidRequest(f"{name}, balance {code} (Bal): {error.message}") from None
        if amount is None:
            continue
        sign = -1 if _text(balance, "CdtDbtInd") == "DBIT" else 1
        balances.setdefault(code, sign * amount[0])
        currency = currency or amount[1]
    lines = [
        _camt_entry(entry, currency, name, number, numbered + number)
        for number, entry in enumerate(_path(stmt, "Ntry"), start=1)
    ]
    return Statement(
        statement_id=_text(stmt, "Id"),
        account=account,
        currency=currency or (lines[0].currency if lines else ""),
        opening_minor=balances.get("OPBD", balances.get("PRCD")),
        closing_minor=balances.get("CLBD"),
        lines=tuple(lines),
    )


def _camt_entry(
    entry: ET.Element, currency: str, statement: str, number: int, line_number: int
) -> StatementLine:
    """One entry, the `number`th of its statement; a refusal names both."""
    try:
        return _camt_line(entry, currency, line_number)
    except InvalidRequest as error:
        raise InvalidRequest(f"{statement}, entry {number} (Ntry): {error.message}") from None


def _camt_line(entry: ET.Element, currency: str, line_number: int) -> StatementLine:
    amount = _camt_amount(_child(entry, "Amt"))
    if amount is None:
        raise InvalidRequest("the entry has no amount (Amt)")
    code = _camt_code(entry)
    items = _path(entry, "NtryDtls", "TxDtls")
    details = tuple(_camt_detail(tx) for tx in items)
    reasons = [_text(tx, "RtrInf", "Rsn", "Cd") for tx in items]
    narrative = _text(entry, "AddtlNtryInf") or " ".join(d.narrative for d in details)
    reference = _text(entry, "AcctSvcrRef") or _text(entry, "NtryRef")
    if not reference and len(details) == 1:
        reference = details[0].reference
    return StatementLine(
        line_number=line_number,
        direction=Direction.DEBIT if _text(entry, "CdtDbtInd") == "DBIT" else Direction.CREDIT,
        amount_minor=amount[0],
        currency=amount[1] or currency,
        booking_date=_camt_date(entry, "BookgDt"),
        value_date=_camt_date(entry, "ValDt"),
        bank_reference=reference,
        narrative=_clip(narrative),
        type_code=code,
        direct_debit=code.count("/") == 2 and code.split("/")[1] in CAMT_DIRECT_DEBIT_FAMILIES,
        reversal=_text(entry, "RvslInd").lower() == "true",
        return_reason=next((r for r in reasons if r), None),
        details=details,
    )


def _camt_code(entry: ET.Element) -> str:
    domain = _text(entry, "BkTxCd", "Domn", "Cd")
    if domain:
        family = _text(entry, "BkTxCd", "Domn", "Fmly", "Cd")
        sub = _text(entry, "BkTxCd", "Domn", "Fmly", "SubFmlyCd")
        return f"{domain}/{family}/{sub}"
    return _text(entry, "BkTxCd", "Prtry", "Cd")


def _camt_detail(tx: ET.Element) -> TxDetail:
    # An Element without children is falsy: test for None, never with `or`.
    element = _child(tx, "Amt")
    if element is None:
        element = _first(tx, ("AmtDtls", "TxAmt", "Amt"))
    amount = _camt_amount(element)
    reference = _text(tx, "Refs", "EndToEndId") or _text(tx, "Refs", "AcctSvcrRef")
    unstructured = " ".join(
        (element.text or "").strip() for element in _path(tx, "RmtInf", "Ustrd")
    )
    return TxDetail(
        amount_minor=amount[0] if amount else None,
        reference="" if reference == "NOTPROVIDED" else reference,
        narrative=_clip(unstructured or _text(tx, "RmtInf", "Strd", "CdtrRefInf", "Ref")),
    )


# ---- BAI2 -------------------------------------------------------------------------------------

# BAI2 type codes 100-399 are credits, 400-699 debits; 165 is a preauthorised (direct-debit
# style) credit, the only one read as a direct debit.
BAI2_DIRECT_DEBIT_TYPES = frozenset({"165"})
BAI2_OPENING_LEDGER = "010"
BAI2_CLOSING_LEDGER = "015"


def parse_bai2(text: str) -> list[Statement]:
    from bai2 import parsers as bai2_parsers

    # The library never stops on a file cut short after a transaction (16 record): it reads
    # that last record again and again. A whole file ends with its 99 record.
    records = _bai2_records(text)
    if records and records[-1].code != "99":
        raise InvalidRequest(
            "the BAI2 file does not end with its file trailer (a 99 record): it was cut "
            "short. Ask the bank for the whole file"
        )
    if not records:
        raise InvalidRequest("the BAI2 file is empty: ask the bank for the file again")
    built = [_bai2_built(record) for record in records]
    reader = _Bai2Reader(records, built)
    try:
        document = bai2_parsers.Bai2FileParser(reader, check_integrity=True).parse()
    except InvalidRequest:
        raise
    except Exception as error:  # the library raises its own several error classes
        raise InvalidRequest(_bai2_problem(error, records, reader.index)) from None
    _check_bai2_fields(records[-1], built[-1].fields)  # the last, never advanced from
    headers = [
        (record, fields.fields[BAI2_GROUP_CURRENCY_INDEX].strip())
        for record, fields in zip(records, built, strict=True)
        if record.code == "02"
    ]
    statements = []
    for group, header in zip(document.children, headers, strict=True):
        for account in group.children:
            statements.append(_bai2_account(group, account, header))
    return _renumber(statements)


@dataclass(frozen=True)
class _Bai2Record:
    """A BAI2 record's first line in the file (counted from 1, blank lines too), its code
    and its lines (continuations, 88, included)."""

    line_number: int
    code: str
    lines: tuple[str, ...]


BAI2_RECORD_NAMES = {
    "01": "the file header",
    "02": "a group header",
    "03": "an account identifier",
    "16": "a transaction",
    "49": "an account trailer",
    "88": "a continuation",
    "98": "a group trailer",
    "99": "the file trailer",
}
_BAI2_TRAILERS = {"Account": "49", "Group": "98", "Bai2File": "99"}


def _bai2_records(text: str) -> list[_Bai2Record]:
    """The file's records as the library groups them (an 88 continues the record before);
    a line whose code is not a BAI2 record code is refused here, naming its line."""
    records: list[_Bai2Record] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        code = line[:2]
        if code not in BAI2_RECORD_NAMES or line[2:3] not in (",", ""):
            raise InvalidRequest(
                f"line {number}: {line[:20]!r} does not start with a BAI2 record code (01, "
                "02, 03, 16, 49, 88, 98 or 99 and a comma): the file is not BAI2 or was "
                "damaged. Ask the bank for the file again"
            )
        if code == "88" and records:
            last = records[-1]
            records[-1] = _Bai2Record(last.line_number, last.code, (*last.lines, line))
        else:
            records.append(_Bai2Record(number, code, (line,)))
    return records


# A group header's fields after its code: receiver, originator, status, as-of date and time,
# currency (field 7 of the record, counting its code), as-of-date modifier.
BAI2_GROUP_HEADER_FIELDS = 7
BAI2_GROUP_DATE_INDEX = 3
BAI2_GROUP_CURRENCY_INDEX = 5


def _bai2_built(record: _Bai2Record):
    """The library's Record (its fields split as the library splits them). A record that
    ends with '/' leaves the fields after it defaulted (BAI2's rule): a group header so
    ended before its currency is given its empty fields, which the library requires."""
    from bai2.constants import RecordCode
    from bai2.helpers import _build_record

    built = _build_record([(RecordCode(line[:2]), line[3:]) for line in record.lines])
    short = BAI2_GROUP_HEADER_FIELDS - len(built.fields)
    if record.code == "02" and record.lines[-1].endswith("/") and short > 0:
        built.fields += [""] * short
    return built


# BAI2 amounts are whole minor units in ASCII digits: a transaction's unsigned, a summary's
# and a control total's with an optional sign. Python's int(), which the library reads them
# with, also takes "1_250", " 12", "+1250" and Arabic-Indic digits, and a transaction's
# "-1250" became a negative credit.
_BAI2_UNSIGNED = re.compile(r"^[0-9]+$", re.ASCII)
_BAI2_SIGNED = re.compile(r"^[+-]?[0-9]+$", re.ASCII)
_BAI2_DATE = re.compile(r"^[0-9]{6}$", re.ASCII)
BAI2_FUNDS_FIELDS = {"S": 3, "V": 2}  # 'D': a count, then that many (day, amount) pairs
BAI2_HOW_TO_WRITE = (
    "BAI2 writes amounts as whole pence in digits, without a decimal point, e.g. 1250 for £12.50"
)


BAI2_NON_MONETARY_TYPE = "890"


def _check_bai2_fields(record: _Bai2Record, fields: list[str]) -> None:
    """Refuse an amount the library would read with a sign it may not have or from text
    that is not plain digits, and a group's as-of date not written YYMMDD; a field the
    walk cannot place is left to the library."""
    where = _bai2_where(record)
    if record.code == "16":
        amount = fields[1] if len(fields) > 1 else None
        # 890 carries text, no money: BAI2 leaves its amount blank ("16,890,,,,,detail
        # reports will be delayed until 11:00 AM." is the specification's own example).
        if amount == "" and fields[0] != BAI2_NON_MONETARY_TYPE:
            raise InvalidRequest(
                f"{where}: the transaction has no amount: ask the bank for the file again"
            )
        if amount and not _BAI2_UNSIGNED.match(amount):
            raise InvalidRequest(
                f"{where}: the amount {amount!r} is not a whole number of pence: "
                f"{BAI2_HOW_TO_WRITE}, and a transaction's without a sign (its type code says "
                "credit or debit)"
            )
    elif record.code == "03":
        for code, amount in _bai2_summary_amounts(fields[2:]):
            if amount and not _BAI2_SIGNED.match(amount):
                raise InvalidRequest(
                    f"{where}: the amount {amount!r} of summary type {code} is not a whole "
                    f"number of pence: {BAI2_HOW_TO_WRITE}, with a + or - in front at most"
                )
    elif record.code == "02" and len(fields) > BAI2_GROUP_DATE_INDEX:
        # The as-of date is every line's booking date. strptime's %y%m%d takes one-digit
        # months and days: "26111" was 1 November 2026, where 11 January is as likely.
        day = fields[BAI2_GROUP_DATE_INDEX]
        if not _BAI2_DATE.match(day):
            raise InvalidRequest(
                f"{where}: the as-of date {day!r} (field 5) is not a date written YYMMDD, "
                "six digits (261201 for 1 December 2026): ask the bank for the file again"
            )
    elif record.code in ("49", "98", "99") and fields:
        total = fields[0]
        if total and not _BAI2_SIGNED.match(total):
            raise InvalidRequest(
                f"{where}: the control total {total!r} is not a whole number of pence: "
                f"{BAI2_HOW_TO_WRITE}, with a + or - in front at most"
            )


def _bai2_summary_amounts(rest: list[str]) -> Iterator[tuple[str, str]]:
    """An 03 record's (type code, amount) pairs, walked as the library walks them."""
    while len(rest) >= 4:
        code, amount, funds = rest[0], rest[1], rest[3]
        yield code, amount
        rest = rest[4:]
        if funds == "D":
            if not rest or not _BAI2_UNSIGNED.match(rest[0]):
                return
            rest = rest[1 + 2 * int(rest[0]) :]
        else:
            rest = rest[BAI2_FUNDS_FIELDS.get(funds, 0) :]


class _Bai2Reader:
    """The library's record iterator over our records (built by _bai2_built), counting
    them so that an error names the record being read, and checking each one's amounts
    once the library has read it (so its own checks of the record come first), before the
    next record (so before a trailer's totals are compared)."""

    def __init__(self, records: list[_Bai2Record], built: list) -> None:
        self._records = records
        self._built = built
        self.index = -1
        self.current_record = None
        self.advance()

    def advance(self) -> None:
        if self.index >= 0:
            _check_bai2_fields(self._records[self.index], self.current_record.fields)
        if self.index + 1 >= len(self._built):
            raise StopIteration
        self.index += 1
        self.current_record = self._built[self.index]


def _bai2_problem(error: Exception, records: list[_Bai2Record], index: int) -> str:
    detail = str(error) or type(error).__name__
    integrity = re.match(r"Invalid (.+?) for (\w+)\. expected (\S+), found (\S+)", detail)
    if integrity:
        what, section, said, found = integrity.groups()
        trailer_code = _BAI2_TRAILERS.get(section, "")
        trailer = next((r for r in reversed(records[: index + 1]) if r.code == trailer_code), None)
        where = _bai2_where(trailer) if trailer else "the file"
        return (
            f"{where}: it says the {what} is {said}, but the records before it make "
            f"{found}. A record may be missing, repeated or changed: ask the bank for the "
            f"file again (the reader said: {detail})"
        )
    record = records[min(max(index, 0), len(records) - 1)]
    return f"{_bai2_where(record)}: {_bai2_what(error, detail, record)} (the reader said: {detail})"


def _bai2_where(record: _Bai2Record) -> str:
    return f"line {record.line_number} (record {record.code}, {BAI2_RECORD_NAMES[record.code]})"


def _bai2_what(error: Exception, detail: str, record: _Bai2Record) -> str:
    number = re.match(r"invalid literal for int\(\) with base 10: (.*)$", detail)
    if number:
        value = number.group(1)
        fields = ",".join(line[3:] if i else line for i, line in enumerate(record.lines))
        amount = fields.split(",")[2:3] if record.code == "16" else []
        if amount and repr(amount[0].rstrip("/")) == value:
            return (
                f"the amount {value} is not a whole number of pence (BAI2 writes amounts "
                "without a decimal point or sign, e.g. 1250 for £12.50)"
            )
        return (
            f"the value {value[:40]} should be a whole number, digits only: a field may be "
            "missing or out of place"
        )
    if "does not match format" in detail or "unconverted data remains" in detail:
        return (
            "a date or time is not a real one: BAI2 writes dates YYMMDD (261201 for "
            "1 December 2026) and times HHMM (1459)"
        )
    if detail.startswith("Type code"):
        code = re.search(r"'([^']*)'", detail)
        shown = code.group(1) if code else "?"
        return f"the type code {shown!r} is not a BAI2 type code (e.g. 399 for a credit)"
    if isinstance(error, IndexError):
        return "the record has fewer fields than BAI2 requires for it: it was cut short"
    expected = re.match(r"Expected RecordCode\.(\w+), got", detail)
    if expected:
        from bai2.constants import RecordCode

        code = RecordCode[expected.group(1)].value
        return (
            f"{BAI2_RECORD_NAMES.get(code, 'another record')} ({code} record) should come "
            "here: the records are out of order or one is missing"
        )
    if "is not a valid" in detail:
        return "a code in the record is not one BAI2 defines"
    if "Only BAI version 2" in detail:
        return "the file is not BAI version 2 (the header's last field should be 2)"
    return "the record cannot be read as BAI2"


def _bai2_account(group, account, header: tuple[_Bai2Record, str]) -> Statement:
    """An account's statement; its currency is its 03 record's, else its group's (02),
    else the library's default for a group header without one (US dollars), noted as
    unstated: no GBP account's file means that default."""
    number = account.header.customer_account_number
    group_record, group_currency = header
    currency = (account.header.currency or group_currency or group.header.currency).upper()
    unstated = ""
    if not (account.header.currency or group_currency):
        unstated = (
            f"{_bai2_where(group_record)} field {BAI2_GROUP_CURRENCY_INDEX + 2} (after the "
            f"as-of time) must name GBP, or account {number}'s 03 record its field 3; BAI2 "
            f"reads a group header without one as {currency}"
        )
    summary = {}
    for item in account.header.summary_items:
        if item.type_code is None:  # the library leaves an empty type code as None
            raise InvalidRequest(
                f"account {number}'s summary (its 03 record) has an amount without a type "
                "code: ask the bank for the file again"
            )
        summary[item.type_code.code] = item.amount
    lines = []
    for tx in account.children:
        if tx.type_code is None:
            raise InvalidRequest(
                f"a transaction (16 record) of account {number} has no type code: ask the "
                "bank for the file again"
            )
        code = tx.type_code.code
        direction = Direction.CREDIT if 100 <= int(code) < 400 else Direction.DEBIT
        lines.append(
            StatementLine(
                line_number=0,
                direction=direction,
                amount_minor=int(tx.amount or 0),
                currency=currency,
                booking_date=group.header.as_of_date,
                value_date=getattr(tx, "value_date", None) or group.header.as_of_date,
                bank_reference=(tx.bank_reference or tx.customer_reference or "").strip(),
                narrative=_clip(tx.text or ""),
                type_code=code,
                direct_debit=code in BAI2_DIRECT_DEBIT_TYPES,
            )
        )
    opening = summary.get(BAI2_OPENING_LEDGER)
    closing = summary.get(BAI2_CLOSING_LEDGER)
    return Statement(
        statement_id=f"{group.header.as_of_date}",
        account=str(account.header.customer_account_number),
        currency=currency,
        opening_minor=int(opening) if opening is not None else None,
        closing_minor=int(closing) if closing is not None else None,
        lines=tuple(lines),
        currency_unstated=unstated,
    )


# ---- MT940 ------------------------------------------------------------------------------------

_MT940_START = re.compile(r"^:20:", re.MULTILINE)


def parse_mt940(text: str) -> list[Statement]:
    starts = [match.start() for match in _MT940_START.finditer(text)]
    if not starts:
        raise InvalidRequest("the MT940 file has no statement (no ':20:' field)")
    chunks = [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    return _renumber(
        [
            _mt940_statement(chunk, text.count("\n", 0, start) + 1)
            for chunk, start in zip(chunks, starts, strict=True)
        ]
    )


MT940_FIELD_NAMES = {
    "20": "the statement's reference",
    "21": "the related reference",
    "25": "the account",
    "28": "the statement number",
    "60": "the opening balance",
    "61": "a statement line",
    "62": "the closing balance",
    "64": "the available balance",
    "65": "the forward available balance",
    "86": "the information for the account holder",
    "90": "the total of the entries",
}


def _mt940_statement(chunk: str, first_line: int = 1) -> Statement:
    transactions = _mt940_transactions()
    try:
        transactions.parse(chunk)
    except _Mt940FieldError as error:
        raise InvalidRequest(_mt940_problem(error, chunk, first_line)) from None
    except Exception as error:  # the library raises plain exceptions for bad fields
        raise InvalidRequest(
            f"the MT940 statement from line {first_line} cannot be read: ask the bank for "
            f"the file again (the reader said: {error})"
        ) from None
    data = transactions.data
    opening = data.get("final_opening_balance") or data.get("intermediate_opening_balance")
    closing = data.get("final_closing_balance") or data.get("intermediate_closing_balance")
    currency = (opening or closing).amount.currency if (opening or closing) else ""
    lines = [_mt940_line(tx.data) for tx in transactions]
    return Statement(
        statement_id=str(data.get("statement_number") or data.get("transaction_reference", "")),
        account=str(data.get("account_identification", "")),
        currency=currency or (lines[0].currency if lines else ""),
        opening_minor=_mt940_balance(opening),
        closing_minor=_mt940_balance(closing),
        lines=tuple(lines),
    )


class _Mt940FieldError(Exception):
    """The field (tag) the mt-940 library failed on, and where it starts in its data."""

    def __init__(self, tag: str, line_index: int, error: Exception) -> None:
        super().__init__(str(error))
        self.tag = tag
        self.line_index = line_index
        self.error = error


class _Mt940Refusal(ValueError):
    """A date or amount the strict reading (_mt940_strict_amount) refuses: what to fix,
    in words."""


# SWIFT's amount (15d): ASCII digits, at least one before the decimal comma, which is
# mandatory, at most 15 characters with it. The library's own pattern ([\d,]{1,15}) stops at
# the first other character and leaves the rest to the next subfield: "1x,50" was read as
# 1.00, "1.50" as 1.00, "12345678901234567,50" as its first 15 characters, and its \d takes
# Arabic-Indic digits.
_MT940_AMOUNT = r"(?P<amount>[0-9]{1,14},[0-9]*)"
MT940_AMOUNT_LENGTH = 15
# A statement line (:61:) up to its debit/credit mark (6!n[4!n]2a), as the library reads it;
# then the funds code ([1!a]), the amount, and the transaction type, which must follow the
# amount (1!a3!c: N, S or F and three letters or digits, e.g. NTRF).
_MT940_LINE_HEAD = re.compile(r"^[0-9]{6}(?:[0-9]{2}|\s{2})?(?:[0-9]{2}|\s{2})?R?[DC]", re.ASCII)
_MT940_LINE_AMOUNT = re.compile(
    rf"(?:[A-Z](?=[0-9]))?[\n ]?{_MT940_AMOUNT}[NSF][A-Z0-9]{{3}}", re.ASCII
)
_MT940_LINE_AMOUNT_AS_WRITTEN = re.compile(
    r"(?:[A-Z](?=[0-9.,]))?[\n ]?(?P<amount>[^\n]*?)(?=[NSF][A-Z0-9]{3}|//|\n|$)"
)
# A balance (:60F:, :62F:, ...): 1!a6!n3!a15d and nothing after it on its line.
MT940_BALANCE_TAGS = frozenset({"60", "60F", "60M", "62", "62F", "62M", "64", "65"})
# Where a field's dates end: a line's value and entry dates (6!n[4!n]), a balance's date
# after its D/C mark (1!a6!n).
MT940_LINE_DATES_END = 10
MT940_BALANCE_DATE_END = 7
_MT940_BALANCE_HEAD = re.compile(r"^[DC][0-9]{6}[A-Z]{3}", re.ASCII)
_MT940_BALANCE_AMOUNT = re.compile(rf"^{_MT940_AMOUNT}$", re.ASCII)


def _mt940_strict_amount(tag: str, value: str) -> Decimal | None:
    """The amount of a statement line or balance field as SWIFT writes it (None for other
    fields, and for a field whose start the library refuses itself, naming what is wrong);
    refuses one the library would misread."""
    if tag in MT940_BALANCE_TAGS or tag == "61":
        # The library's \d takes other scripts' digits (and int() reads them) in its dates.
        start = value[: MT940_LINE_DATES_END if tag == "61" else MT940_BALANCE_DATE_END]
        if not start.isascii():
            raise _Mt940Refusal(
                f"{start!r} is not written in the digits 0-9: MT940 writes its dates YYMMDD "
                "and its amounts like 12,50"
            )
    if tag == "61":
        head = _MT940_LINE_HEAD.match(value)
        if head is None:
            return None
        rest = value[head.end() :]
        strict = _MT940_LINE_AMOUNT.match(rest)
        written = _MT940_LINE_AMOUNT_AS_WRITTEN.match(rest)
        follows = "then the transaction type, e.g. NTRF"
    elif tag in MT940_BALANCE_TAGS:
        line = value.split("\n", 1)[0].rstrip()
        head = _MT940_BALANCE_HEAD.match(line)
        if head is None:
            return None
        rest = line[head.end() :]
        strict = _MT940_BALANCE_AMOUNT.match(rest)
        written = None
        follows = "and nothing after it"
    else:
        return None
    if strict is None or len(strict["amount"]) > MT940_AMOUNT_LENGTH:
        shown = written["amount"] if written else rest
        raise _Mt940Refusal(
            f"the amount {shown[:40]!r} is not written as MT940 requires: digits with a "
            f"decimal comma, at most {MT940_AMOUNT_LENGTH} characters (e.g. 1250,00 or 12,5), "
            f"{follows}"
        )
    return Decimal(strict["amount"].replace(",", "."))


@cache
def _mt940_reader_class() -> type:
    import mt940

    class FieldReporting(mt940.models.Transactions):
        def _process_match(self, match, i, valid_matches, data) -> None:
            tag = match.group("full_tag")
            end = valid_matches[i + 1].start() if valid_matches[i + 1 : i + 2] else len(data)
            try:
                strict = _mt940_strict_amount(tag, data[match.end() : end].strip())
                super()._process_match(match, i, valid_matches, data)
                if strict is not None:
                    _check_mt940_amount(self._amount_read(match), strict)
            except Exception as error:
                line_index = data.count("\n", 0, match.start())
                raise _Mt940FieldError(tag, line_index, error) from error

        def _amount_read(self, match):
            """The Amount the library made of the field just read."""
            if match.group("full_tag") == "61":
                return self.transactions[-1].data["amount"]
            tag = (
                self.tags.get(match.group("full_tag"))
                or self.tags[self.normalize_tag_id(match.group("tag"))]
            )
            return self.data[tag.slug].amount

    return FieldReporting


def _check_mt940_amount(amount, strict: Decimal) -> None:
    """The library's reading must be the strict one; and a line's or balance's amount may
    have no more decimals than its currency (its statement's)."""
    if abs(amount.amount) != strict:
        raise _Mt940Refusal(
            f"the amount reads as {abs(amount.amount)} where it is written {strict}"
        )
    if amount.currency is not None:
        try:
            to_minor(strict, amount.currency)
        except InvalidRequest as error:
            raise _Mt940Refusal(error.message) from None


def _mt940_transactions():
    return _mt940_reader_class()()


def _mt940_problem(error: _Mt940FieldError, chunk: str, first_line: int) -> str:
    # The library reads the chunk without its blank lines and '-' lines: count them back.
    kept = [
        index
        for index, raw in enumerate(chunk.split("\n"))
        if raw.replace("\r", "").strip() not in ("", "-")
    ]
    line = first_line + kept[min(error.line_index, len(kept) - 1)]
    name = MT940_FIELD_NAMES.get(error.tag[:2], "a field")
    cause = error.error
    detail = str(cause)
    if isinstance(cause, RuntimeError) and len(cause.args) == 3:  # (message, tag, value)
        detail = f"no match for {str(cause.args[2])[:60]!r}"
    if isinstance(cause, _Mt940Refusal):
        return (
            f"line {line} (field :{error.tag}:, {name}): {detail}. Ask the bank for the file again"
        )
    if isinstance(cause, KeyError):
        what = f"the field :{error.tag}: is not an MT940 field"
    elif isinstance(cause, RuntimeError):
        what = (
            "the field is not written as MT940 requires for it: a part is missing or out of place"
        )
    elif "must be in" in detail or "out of range" in detail:
        what = "a date in it is not a real date (MT940 writes dates YYMMDD, e.g. 261201)"
    elif isinstance(cause, ArithmeticError) or "decimal" in detail.lower():
        what = "an amount in it is not a number like 12,50"
    else:
        what = "the field cannot be read"
    return (
        f"line {line} (field :{error.tag}:, {name}): {what}. Ask the bank for the file "
        f"again (the reader said: {detail or type(cause).__name__})"
    )


def _mt940_balance(balance) -> int | None:
    if balance is None:
        return None
    return to_minor(balance.amount.amount, balance.amount.currency)


def _mt940_line(data: dict) -> StatementLine:
    amount = data["amount"]
    if amount.currency is None:  # a line's currency is its statement's opening balance's
        raise InvalidRequest(
            "a statement line (:61:) has no currency: the statement has no opening balance "
            "(:60F:) to take it from. Ask the bank for the complete statement"
        )
    code = str(data.get("id") or "")
    status = str(data.get("status") or "")
    narrative = data.get("transaction_details") or data.get("purpose") or ""
    return StatementLine(
        line_number=0,
        direction=Direction.CREDIT if amount.amount >= 0 else Direction.DEBIT,
        amount_minor=abs(to_minor(amount.amount, amount.currency)),
        currency=amount.currency,
        booking_date=_plain_date(data.get("entry_date") or data.get("date")),
        value_date=_plain_date(data.get("date")),
        bank_reference=_mt940_reference(data),
        narrative=_clip(str(narrative)),
        type_code=code,
        direct_debit=code.endswith("DDT"),
        reversal=status.startswith("R"),
        return_reason=data.get("return_debit_notes"),
    )


def _mt940_reference(data: dict) -> str:
    for key in ("bank_reference", "customer_reference"):
        value = str(data.get(key) or "").strip()
        if value and value != "NONREF":  # SWIFT's "no reference"
            return value
    return ""


def _plain_date(value: date | None) -> date | None:
    """mt-940's dates are a subclass that does not survive JSON: keep the plain date."""
    return date(value.year, value.month, value.day) if value is not None else None


# ---- statements as an import ------------------------------------------------------------------

LEDGER_CURRENCY = "GBP"
STATEMENT_FORMATS = frozenset({ImportFormat.CAMT053, ImportFormat.BAI2, ImportFormat.MT940})


def read_statements(content: bytes, file_format: ImportFormat) -> list[Statement]:
    """The file's statements; a file that cannot be read at all refuses the import."""
    try:
        if file_format is ImportFormat.CAMT053:
            return parse_camt053(content)
        text = decode(content)
        if file_format is ImportFormat.BAI2:
            return parse_bai2(text)
        return parse_mt940(text)
    except InvalidRequest as error:
        if isinstance(error, ImportRefused):
            raise
        raise refuse([LineProblem(0, error.message)]) from None


def statement_file(
    content: bytes, file_format: ImportFormat, *, now: datetime | None = None
) -> ParsedFile:
    """A statement file as an import: its GBP credit lines (receipts) and returned direct
    debits (reversals), refused whole when a statement is not in pounds or does not
    reconcile (its balances are its control totals, like an Allpay trailer)."""
    statements = read_statements(content, file_format)
    problems: list[LineProblem] = []
    lines: list[ImportLine] = []
    seen: dict[str, int] = {}
    for statement in statements:
        problems.extend(_statement_problems(statement))
        for line in statement.lines:
            kind = _line_kind(line)
            if kind is None:
                continue
            try:
                lines.append(_import_line(statement, line, kind, seen, now))
            except LedgerError as error:
                problems.append(LineProblem(line.line_number, error.message))
    credits = [line for line in lines if line.kind is LineKind.RECEIPT]
    line_count = sum(len(statement.lines) for statement in statements)
    return finish_parsed(
        file_format,
        lines,
        line_count,
        sum(line.amount_pence for line in credits),
        len(credits),
        problems,
    )


def _statement_problems(statement: Statement) -> list[LineProblem]:
    name = f"statement {statement.statement_id or '(no id)'} of account {statement.account}"
    problems = []
    currency = statement.currency or "no currency"
    if statement.currency_unstated:
        problems.append(
            LineProblem(
                0,
                f"{name}: the currency is missing: {statement.currency_unstated}. Ask the "
                "bank for the file with its currency",
            )
        )
    elif currency != LEDGER_CURRENCY:
        problems.append(
            LineProblem(
                0,
                f"{name} is in {currency}; the ledger keeps pounds (GBP) only: import the "
                "GBP account's statement",
            )
        )
    if statement.reconciles is False:
        problems.append(
            LineProblem(
                0,
                f"{name} does not reconcile: opening {_money(statement.opening_minor)} + "
                f"credits {_money(statement.credits_minor)} - debits "
                f"{_money(statement.debits_minor)} is not the closing "
                f"{_money(statement.closing_minor)}; a line may be missing or repeated. Ask "
                "the bank for the complete statement",
            )
        )
    return problems


def _money(minor: int | None) -> str:
    return pence_to_pounds(minor) if minor is not None else "none"


def _line_kind(line: StatementLine) -> LineKind | None:
    """What the ledger does with a line: a credit is a receipt; a debit reversing an
    earlier direct-debit collection is a return; money paid out may be a card provider's
    negative payout (its refunds exceeded its payments), linked when it is one and else
    left alone, as a reversal of a payment out and a zero line are: not income."""
    if line.amount_minor == 0:
        return None
    if line.direction is Direction.CREDIT:
        return None if line.reversal else LineKind.RECEIPT
    if line.reversal and (line.direct_debit or line.return_reason):
        return LineKind.DIRECT_DEBIT_RETURN
    return None if line.reversal else LineKind.PAYOUT_DEBIT


def _import_line(
    statement: Statement,
    line: StatementLine,
    kind: LineKind,
    seen: dict[str, int],
    now: datetime | None,
) -> ImportLine:
    day = line.booking_date or line.value_date
    if day is None:
        raise InvalidRequest("the line has no booking or value date")
    channel = Channel.DIRECT_DEBIT if line.direct_debit else Channel.BANK_TRANSFER
    return ImportLine(
        line_number=line.line_number,
        kind=kind,
        channel=channel,
        amount_pence=line.amount_minor,
        reference=payer_reference(line),
        received_at=received_at_for(day, now),
        # A receipt's id, or what identifies a returned direct debit at the bank: the same
        # return in a statement downloaded again takes nothing back twice
        # (application.imports._returns).
        external_id=(
            statement_line_id(statement, line, seen)
            if kind in (LineKind.RECEIPT, LineKind.DIRECT_DEBIT_RETURN)
            else None
        ),
        details={
            "bank_type_code": line.type_code,
            "bank_reference": line.bank_reference,
            "booking_date": day.isoformat(),
            "value_date": line.value_date.isoformat() if line.value_date else None,
            "narrative": line.narrative,
            "return_reason": line.return_reason,
            "breakdown": [
                {"amount_pence": d.amount_minor, "reference": d.reference} for d in line.details
            ],
            "statement_line": line.line_number,
        },
    )


def payer_reference(line: StatementLine) -> str:
    """The reference the payer gave: a single item's remittance text or end-to-end id, else
    the line's narrative, else the bank's reference."""
    if len(line.details) == 1:
        detail = line.details[0]
        if detail.narrative or detail.reference:
            return (detail.narrative or detail.reference)[:MAX_REFERENCE_LENGTH]
    return (line.narrative or line.bank_reference)[:MAX_REFERENCE_LENGTH]


def statement_line_id(statement: Statement, line: StatementLine, seen: dict[str, int]) -> str:
    """A receipt id from what identifies the money at the bank (account, booking date, bank
    reference, amount), not from the file: the same line in a later, overlapping statement
    is the same receipt and records nothing. Identical lines of one file are told apart by
    their order."""
    day = line.booking_date or line.value_date
    key = f"{statement.account}|{day}|{line.bank_reference}|{line.amount_minor}|{line.direction}"
    seen[key] = seen.get(key, 0) + 1
    digest = hashlib.sha256(f"{key}|{seen[key]}".encode()).hexdigest()[:32]
    return f"{STATEMENT_ID_PREFIX}{digest}"


STATEMENT_ID_PREFIX = "stmt:"


# ---- naming a card provider's payout ------------------------------------------------------

# The letters of GOV.UK Pay's payout narrative as banks print it ("GOVUK PAY", "GOV.UK PAY").
PAYOUT_NARRATIVES = ("GOVUKPAY",)
MAX_PAYOUT_NARRATIVES = 20
# The letters of the cash-collection providers' settlement narratives: the providers behind
# the Allpay file's payment types and channels (Allpay, for the Post Office and bills
# online; PayPoint; Payzone). With the payout narratives, a statement credit line naming one
# is a provider's money, never a payer's own transfer (application.imports.names_provider).
# The ledger's are a setting (LEDGER_COLLECTOR_NARRATIVES), these by default.
COLLECTOR_NARRATIVES = ("ALLPAY", "PAYPOINT", "PAYZONE")
_COLLECTOR_LETTERS = frozenset(COLLECTOR_NARRATIVES)
# What a bank may print run together with a collector's name, as one word ("ALLPAYLTD",
# "PAYPOINTPLC", "PAYZONEUKLTD"): a company's suffixes, at most MAX_COMPANY_SUFFIXES of
# them, ending the word. A payer's word that merely starts with a collector's name
# ("ALL PAYMENTS", "PAYPOINTER") goes on with other letters, and names none.
COMPANY_SUFFIXES = ("LTD", "LIMITED", "PLC", "UK")
MAX_COMPANY_SUFFIXES = 2


def payout_patterns(patterns: Iterable[str], *, collectors: bool = False) -> tuple[str, ...]:
    """Patterns naming a card provider's payout (or, `collectors`, a cash collector's
    settlement), as compared (names_payout): their letters, upper case. Blank ones are
    dropped; one with text but no letter would name every line."""
    what, taken_for = (
        ("collector narrative", "a collector's settlement")
        if collectors
        else ("payout narrative", "a payout")
    )
    found = []
    for pattern in patterns:
        letters = _letters(pattern)
        if pattern.strip() and not letters:
            raise InvalidRequest(
                f"the {what} pattern {pattern.strip()!r} has no letter: it would take every "
                f"statement line for {taken_for}"
            )
        if letters:
            found.append(letters)
    if len(found) > MAX_PAYOUT_NARRATIVES:
        raise InvalidRequest(f"at most {MAX_PAYOUT_NARRATIVES} {what} patterns")
    return tuple(found)


def names_payout(narrative: str | None, patterns: Iterable[str]) -> bool:
    """Whether a statement line's narrative (or, once recorded, its reference) holds the
    letters of one of `patterns` (payout_patterns), in any case, whatever comes between
    them: a payer's own transfers that happen to add up to a payout name none."""
    letters = _letters(narrative or "")
    return any(pattern in letters for pattern in patterns)


def names_provider_words(
    narrative: str | None,
    patterns: Iterable[str],
    collectors: Collection[str] = _COLLECTOR_LETTERS,
) -> bool:
    """Whether a statement line's narrative names one of `patterns` (payout_patterns) as
    names_payout does, the pattern's letters starting at a word's start, and a cash
    collector's (`collectors`, COLLECTOR_NARRATIVES by default) ending at a word's end too,
    or followed in its word by a company's suffixes alone (COMPANY_SUFFIXES: "ALLPAYLTD",
    "PAYPOINTPLC"): a bank prints a provider's name as its own word or words ("ALLPAY
    LTD", "GOV.UK PAY", "GOVUK PAYOUT"), while a payer's own text may hold one inside or at
    the start of a word ("HALL PAYMENT" runs together to ...HALLPAYMENT, "ALL PAYMENTS" to
    ALLPAYMENTS)."""
    text = (narrative or "").upper()
    letters: list[str] = []
    starts, ends, previous = [], set(), False
    for char in text:
        alpha = char.isalpha()
        if alpha and not previous:
            starts.append(len(letters))
        elif previous and not alpha:
            ends.add(len(letters))
        if alpha:
            letters.append(char)
        previous = alpha
    ends.add(len(letters))
    joined = "".join(letters)
    return any(
        joined.startswith(pattern, start)
        and (pattern not in collectors or _ends_a_name(joined, start + len(pattern), ends))
        for pattern in patterns
        for start in starts
    )


def _ends_a_name(joined: str, end: int, ends: set[int]) -> bool:
    """Whether a collector's name ending at `end` (in the narrative's letters) ends its word,
    or what follows it in its word is company suffixes alone (MAX_COMPANY_SUFFIXES at most:
    "ALLPAYLTD", not "ALLPAYL TD")."""
    word_end = min(at for at in ends if at >= end)  # (the letters' end is one)
    return _suffixes_only(joined[end:word_end], MAX_COMPANY_SUFFIXES)


def _suffixes_only(rest: str, most: int) -> bool:
    return not rest or (
        most > 0
        and any(
            rest.startswith(suffix) and _suffixes_only(rest[len(suffix) :], most - 1)
            for suffix in COMPANY_SUFFIXES
        )
    )


@dataclass(frozen=True)
class ProviderNames:
    """What names a payment provider in a statement credit line's narrative: the card
    payouts' and the cash collectors' patterns (payout_patterns), the collectors' among
    them whole words or followed by a company's suffixes (names_provider_words). Empty
    (falsy): no line names a provider (files other than statements)."""

    patterns: tuple[str, ...] = ()
    collectors: frozenset[str] = _COLLECTOR_LETTERS

    @classmethod
    def of(cls, payouts: Iterable[str], collectors: Iterable[str]) -> ProviderNames:
        """From the settings' patterns (LEDGER_PAYOUT_NARRATIVES, LEDGER_COLLECTOR_NARRATIVES)."""
        collector_patterns = payout_patterns(collectors, collectors=True)
        return cls(payout_patterns(payouts) + collector_patterns, frozenset(collector_patterns))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def named_in(self, narrative: str | None) -> bool:
        return bool(self.patterns) and names_provider_words(
            narrative, self.patterns, self.collectors
        )


NO_PROVIDERS = ProviderNames()


def _letters(text: str) -> str:
    return "".join(filter(str.isalpha, text.upper()))
