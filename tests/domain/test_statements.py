"""Bank statement parsers (camt.053, BAI2, MT940) against the real samples' known totals.

The samples are read from ../shared/realdata/statements (never copied here); their totals
are the README's there, computed independently with other tools.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import InvalidRequest
from domain.statements import (
    Direction,
    parse_bai2,
    parse_camt053,
    parse_mt940,
    to_minor,
)

STATEMENTS = Path(
    os.environ.get(
        "LEDGER_TEST_STATEMENT_SAMPLES",
        Path(__file__).resolve().parents[3] / "shared" / "realdata" / "statements",
    )
)
needs_samples = pytest.mark.skipif(
    not (STATEMENTS / "camt053").is_dir(),
    reason=f"real statement samples not found at {STATEMENTS}: set LEDGER_TEST_STATEMENT_SAMPLES",
)


def read(name: str):
    path = STATEMENTS / name
    if name.startswith("camt053/"):
        return parse_camt053(path.read_bytes())
    if name.startswith("bai2/"):
        return parse_bai2(path.read_text())
    return parse_mt940(path.read_text(encoding="latin-1"))


def credit_count(statement) -> int:
    """Credit lines with money (Citi's MT940 echoes BAI codes as zero-amount credits)."""
    return sum(
        1 for line in statement.lines if line.direction is Direction.CREDIT and line.amount_minor
    )


# file, per statement: (currency, credit lines, credited, debited, reconciles)
KNOWN = {
    "camt053/genkgo_camt053.v2.minimal.xml": [("EUR", 1, 885, 0, False)],
    "camt053/genkgo_camt053.v2.five.decimals.xml": [("EUR", 1, 885, 0, False)],
    "camt053/genkgo_camt053.v2.multi.statement.xml": [
        ("EUR", 1, 885, 0, True),
        ("EUR", 0, 0, 700, True),
    ],
    "camt053/genkgo_camt053.v4.xml": [("EUR", 1, 885, 0, False)],
    "camt053/genkgo_camt053.v8.xml": [("EUR", 1, 885, 0, False)],
    "camt053/oca_test-camt053.xml": [("EUR", 1, 140531, 75425 + 66405, False)],
    "camt053/oca_test-camt053-txdtls.xml": [("CHF", 1, 348300, 0, True)],
    "bai2/citi_example.bai2": [("GBP", 1, 1, 0, False)],
    "bai2/nwb_example.bai2": [("GBP", 1, 89, 2765, True)],
    "bai2/svb_us_example.bai2": [("USD", 1, 490196, 0, True), ("USD", 1, 905800, 0, True)],
    "bai2/account_trailer_amount_blank_example.bai2": [("USD", 0, 0, 0, None)] * 2,
    "mt940/citi_mt940.txt": [("USD", 0, 0, 114275, True)],
    "mt940/cmxl_mt940.sta": [
        ("DEM", 4, 4939674, 4930944, True),
        ("EUR", 1, 300000, 80000, True),
        ("PLN", 2, 2004000, 1000000, True),
    ],
    "mt940/jejik_abnamro.sta": [("EUR", 0, 0, 32144, False), ("EUR", 0, 0, 2449, False)],
    "mt940/betterplace_sepa_snippet.sta": [
        ("EUR", 3, 36009391, 150000, True),
        ("EUR", 5, 107065181, 357256911, False),
    ],
}


@needs_samples
@pytest.mark.parametrize("name", sorted(KNOWN))
def test_real_samples_give_their_known_totals_and_reconciliation(name: str) -> None:
    statements = read(name)
    found = [
        (s.currency, credit_count(s), s.credits_minor, s.debits_minor, s.reconciles)
        for s in statements
    ]
    assert found == KNOWN[name]
    numbers = [line.line_number for s in statements for line in s.lines]
    assert numbers == list(range(1, len(numbers) + 1)), "lines are numbered across the file"


@needs_samples
def test_readme_totals_across_statements() -> None:
    """The README's credited totals per file (several statements summed)."""
    assert sum(s.credits_minor for s in read("mt940/betterplace_sepa_snippet.sta")) == 143074572
    assert sum(s.debits_minor for s in read("mt940/betterplace_sepa_snippet.sta")) == 357406911
    assert sum(s.debits_minor for s in read("mt940/jejik_abnamro.sta")) == 34593
    assert sum(s.credits_minor for s in read("bai2/svb_us_example.bai2")) == 1395996


@needs_samples
def test_a_batched_camt_entry_keeps_its_breakdown_and_the_entry_amount_counts() -> None:
    (statement,) = read("camt053/oca_test-camt053-txdtls.xml")
    (line,) = statement.lines
    assert line.amount_minor == 348300
    assert [d.amount_minor for d in line.details] == [218700, 129600]
    (v4,) = read("camt053/genkgo_camt053.v4.xml")
    # Its breakdown says SEK 0: the entry's own amount is the one booked.
    assert v4.lines[0].amount_minor == 885 and v4.lines[0].details[0].amount_minor == 0


@needs_samples
def test_a_camt_direct_debit_return_is_a_reversal_with_its_reason() -> None:
    (statement,) = read("camt053/oca_test-camt053.xml")
    returned = [line for line in statement.lines if line.reversal]
    assert len(returned) == 1
    (line,) = returned
    assert line.direction is Direction.DEBIT and line.amount_minor == 66405
    assert line.direct_debit and line.return_reason == "AC06"
    assert [d.amount_minor for d in line.details] == [56405, 10000]
    assert statement.lines[0].direct_debit and statement.lines[0].type_code == "PMNT/RDDT/ESDD"


@needs_samples
def test_bai2_lines_carry_type_reference_and_narrative() -> None:
    (statement,) = read("bai2/citi_example.bai2")
    (line,) = statement.lines
    assert line.type_code == "191" and line.bank_reference == "1234567890"
    assert line.narrative.startswith("FR:FP SIP INCOMING")
    assert line.booking_date.isoformat() == "2015-07-15"


def test_xml_with_a_doctype_is_refused_before_it_is_parsed() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Document>&b;</Document>'
    )
    with pytest.raises(InvalidRequest, match="DOCTYPE or ENTITY"):
        parse_camt053(bomb)


def test_xml_that_is_not_a_statement_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="not a camt.053"):
        parse_camt053(b"<Document><Other/></Document>")
    with pytest.raises(InvalidRequest, match="not well-formed"):
        parse_camt053(b"<Document>")


def test_amounts_are_minor_units_and_extra_precision_is_refused() -> None:
    assert to_minor("8.850", "EUR") == 885
    assert to_minor("12", "GBP") == 1200
    assert to_minor("500", "JPY") == 500
    with pytest.raises(InvalidRequest, match="more decimals"):
        to_minor("1.005", "GBP")


# Decimal() takes each of these (or raises other than InvalidRequest): "Infinity" and
# "1e999999" stopped an import with an unexpected OverflowError (a 500 over HTTP), and
# "1_000.00" or Arabic-Indic digits were read as amounts. A statement writes 1234.50.
NOT_PLAIN_DECIMALS = [
    "Infinity",
    "-inf",
    "NaN",
    "sNaN",
    "1e999999",
    "1E+3",
    "1_000.00",
    "\u0662\u0665.\u0660\u0660",
    "0x19",
    "",
]


@pytest.mark.parametrize("amount", NOT_PLAIN_DECIMALS)
def test_an_amount_that_is_not_a_plain_decimal_is_refused_saying_how_to_write_it(amount) -> None:
    with pytest.raises(InvalidRequest, match="is not a number like 1234.50"):
        to_minor(amount, "GBP")


@pytest.mark.parametrize("amount", NOT_PLAIN_DECIMALS)
def test_a_camt_entry_whose_amount_is_not_a_plain_decimal_refuses_the_file(amount) -> None:
    from tests.application.test_statement_imports import camt, entry

    content = camt(entry("25.00", ref="B1")).replace(b">25.00<", f">{amount}<".encode())
    with pytest.raises(InvalidRequest, match="is not a number like 1234.50"):
        parse_camt053(content)


@pytest.mark.parametrize(
    "day", ["2026-02-30", "yesterday", "20261130", "2026-W48-1", "\u0662026-11-30"]
)
def test_a_camt_entry_whose_date_is_not_a_date_refuses_the_file(day) -> None:
    """date.fromisoformat's ValueError stopped the import as an unexpected error."""
    from tests.application.test_statement_imports import TODAY, camt, entry

    content = camt(entry("25.00", ref="B1"))
    content = content.replace(f"<BookgDt><Dt>{TODAY}".encode(), f"<BookgDt><Dt>{day}".encode())
    with pytest.raises(InvalidRequest, match="in BookgDt is not a date like 2026-03-31"):
        parse_camt053(content)


@needs_samples
@pytest.mark.parametrize(
    ("change", "says"),
    [
        (("03,88888888 600004,GBP,010,", "03,88888888 600004,GBP,,"), "without a type code"),
        (("16,399,89,,,/", "16,,89,,,/"), "has no type code"),
    ],
)
def test_a_bai2_amount_without_a_type_code_refuses_the_file(change, says) -> None:
    """The library reads an empty type code as None: an AttributeError (a 500) before."""
    content = (STATEMENTS / "bai2" / "nwb_example.bai2").read_text()
    assert change[0] in content
    with pytest.raises(InvalidRequest, match=says):
        parse_bai2(content.replace(*change))


@needs_samples
def test_a_bai2_file_cut_short_after_a_transaction_is_refused_not_read_forever() -> None:
    """The library read its last 16 record again and again, never returning: an import
    (or an upload's worker) hung at full CPU. Read in a child process, killed if it hangs."""
    content = (STATEMENTS / "bai2" / "nwb_example.bai2").read_text()
    cut = "".join(content.splitlines(keepends=True)[:13])
    assert cut.rstrip().endswith("16,399,89,,,/")
    reader = (
        "import sys\n"
        "from domain.errors import InvalidRequest\n"
        "from domain.statements import parse_bai2\n"
        "try:\n"
        "    parse_bai2(sys.stdin.read())\n"
        "except InvalidRequest as error:\n"
        "    print(error)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", reader],
        input=cut,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
        env=os.environ | {"PYTHONPATH": str(root)},
        check=True,
    )
    assert "cut short" in done.stdout, done.stdout + done.stderr


def test_an_mt940_line_without_a_currency_refuses_the_file() -> None:
    """Without an opening balance (:60F:) a line has no currency: an AttributeError before."""
    from tests.application.test_statement_imports import mt940

    rows = mt940(("C", "12,50", "R1")).decode().split("\r\n")
    content = "\r\n".join(row for row in rows if not row.startswith(":60F:"))
    with pytest.raises(InvalidRequest, match="no opening balance"):
        parse_mt940(content)


def test_mt940_without_a_statement_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="no statement"):
        parse_mt940("hello\n")


def test_xml_in_another_encoding_is_refused_so_no_declaration_can_hide() -> None:
    hidden = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE d><Document/>'.encode("utf-16")
    with pytest.raises(InvalidRequest, match="not UTF-8"):
        parse_camt053(hidden)
    with pytest.raises(InvalidRequest, match="declares encoding"):
        parse_camt053(b'<?xml version="1.0" encoding="cp500"?><Document/>')


amounts = st.integers(min_value=1, max_value=10**9)
lines_strategy = st.lists(st.tuples(st.booleans(), amounts), min_size=0, max_size=8)


def _pounds(pence: int, separator: str = ".") -> str:
    return f"{pence // 100}{separator}{pence % 100:02d}"


@settings(max_examples=60, deadline=None)
@given(lines=lines_strategy, opening=st.integers(min_value=0, max_value=10**9))
def test_camt_and_mt940_totals_are_exact_in_pence_and_reconcile(lines, opening) -> None:
    """Whatever the amounts, the parsed totals are the sums sent, to the penny, and a
    statement whose closing balance was computed from them reconciles."""
    from tests.application.test_statement_imports import camt, entry, mt940

    credits = sum(p for debit, p in lines if not debit)
    debits = sum(p for debit, p in lines if debit)
    entries = [entry(_pounds(p), ref=f"R{n}", debit=debit) for n, (debit, p) in enumerate(lines)]
    (statement,) = parse_camt053(camt(*entries, opening=_pounds(opening)))
    assert (statement.credits_minor, statement.debits_minor) == (credits, debits)
    assert statement.reconciles is True and statement.opening_minor == opening
    rows = [("D" if debit else "C", _pounds(p, ","), f"R{n}") for n, (debit, p) in enumerate(lines)]
    (swift,) = parse_mt940(mt940(*rows, opening=_pounds(opening, ",")).decode())
    assert (swift.credits_minor, swift.debits_minor) == (credits, debits)
    assert swift.reconciles is True


def _broken_bai2(old: str, new: str) -> str:
    from tests.application.test_statement_imports import bai2

    content = bai2().decode()
    assert old in content
    return content.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        (
            "16,399,1250,",
            "16,399,x12,",
            "line 4 (record 16, a transaction): the amount 'x12' is not a whole number of pence",
        ),
        ("16,399,1250,", "16,3x9,1250,", "line 4 (record 16, a transaction): the type code '3x9'"),
        ("16,399,1250,,BANKREF1,,", "16,399,1250,Q,BANKREF1,,", "line 4 (record 16"),
        ("02,COUNCIL,SENDER,1,", "02,COUNCIL,SENDER,1,2613", "line 2 (record 02, a group header)"),
        (
            ",1200,1,,,2/",
            ",1200,1,,,3/",
            "line 1 (record 01, the file header): the file is not BAI",
        ),
        ("03,12345678,GBP,", "16,12345678,GBP,", "an account identifier (03 record) should come"),
        ("49,", "49,1", "line 5 (record 49, an account trailer): it says the account control"),
        ("98,", "98,1", "line 6 (record 98, a group trailer): it says the group control total"),
        ("16,399,", "X6,399,", "line 4: 'X6,399,"),
    ],
)
def test_a_broken_bai2_file_names_its_line_and_record_and_what_to_fix(old, new, says) -> None:
    """The library's own words ("invalid literal for int()", "list index out of range")
    told an officer nothing: now the line, the record and the fix, the words as a hint."""
    with pytest.raises(InvalidRequest) as refused:
        parse_bai2(_broken_bai2(old, new))
    assert says in refused.value.message
    assert "Traceback" not in refused.value.message


def test_a_bai2_record_with_too_few_fields_says_so() -> None:
    content = _broken_bai2(",1200,1,,,2/", "/")
    with pytest.raises(InvalidRequest, match=r"line 1 \(record 01.*fewer fields") as refused:
        parse_bai2(content)
    assert "(the reader said: list index out of range)" in refused.value.message


def test_a_bai2_line_counts_blank_lines_as_an_editor_does() -> None:
    content = "\n\n" + _broken_bai2("16,399,1250,", "16,399,x12,")
    with pytest.raises(InvalidRequest, match=r"^line 6 \(record 16"):
        parse_bai2(content)


def _broken_mt940(index: int, new: str) -> str:
    from tests.application.test_statement_imports import mt940

    rows = mt940(("C", "12,50", "R1"), ("C", "3,00", "R2")).decode().split("\r\n")
    rows[index] = new(rows[index])
    return "\r\n".join(rows)


@pytest.mark.parametrize(
    ("index", "change", "says"),
    [
        (
            6,
            lambda row: row[:6] + "13" + row[8:],
            "line 7 (field :61:, a statement line): a date in it is not a real date",
        ),
        (3, lambda row: row[:7] + "1301" + row[11:], "line 4 (field :60F:, the opening balance)"),
        (4, lambda row: ":61:XX", "line 5 (field :61:, a statement line): the field is not"),
        (8, lambda row: row[:10], "line 9 (field :62F:, the closing balance)"),
    ],
)
def test_a_broken_mt940_statement_names_its_line_and_field(index, change, says) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_mt940(_broken_mt940(index, change))
    assert says in refused.value.message
    assert "the reader said:" in refused.value.message
    assert " object at 0x" not in refused.value.message


def test_an_mt940_line_number_counts_from_the_top_of_the_file() -> None:
    first = _broken_mt940(0, lambda row: row)
    second = _broken_mt940(6, lambda row: row[:6] + "13" + row[8:])
    with pytest.raises(InvalidRequest, match=r"^line 17 \(field :61:"):
        parse_mt940(first + "\r\n" + second)


def _mt940_with_line_amount(written: str, read_as: str = "1,00") -> str:
    """A statement whose one credit line's amount is `written`, its closing balance made
    for `read_as` (what a lax reader makes of it: then the file reconciles)."""
    from tests.application.test_statement_imports import mt940

    text = mt940(("C", read_as, "R1")).decode()
    return text.replace(f"C{read_as}NTRF", f"C{written}NTRF", 1)


# (written, what the library read it as: the file's balances made to agree with that)
MALFORMED_MT940_AMOUNTS = [
    ("1x,50", "1,00"),
    ("1.50", "1,00"),
    (",50", "0,50"),
    ("1,50x", "1,50"),
    ("1,50X", "1,50"),
    ("1250", "1250,00"),
    ("12345678901234567,50", "1,00"),
    ("\u0661,50", "1,50"),
    ("12,50 ", "12,50"),
    ("1,5,0", "1,00"),
    ("", "1,00"),
]


@pytest.mark.parametrize(("written", "read_as"), MALFORMED_MT940_AMOUNTS)
def test_an_mt940_line_with_a_malformed_amount_refuses_the_file_naming_its_line(
    written, read_as
) -> None:
    """The library stops an amount at its first character that is not a digit or comma
    and reads the rest as the reference: "1x,50" was a credit of 1.00, and a statement
    whose balances agreed with that reconciled and imported it."""
    with pytest.raises(InvalidRequest) as refused:
        parse_mt940(_mt940_with_line_amount(written, read_as))
    message = refused.value.message
    assert message.startswith("line 5 (field :61:, a statement line): the amount "), message
    assert f"{written.strip()[:40]!r}"[1:-1] in message
    assert "digits with a decimal comma" in message and "Ask the bank" in message


def test_an_mt940_line_with_more_decimals_than_pounds_names_its_line() -> None:
    with pytest.raises(InvalidRequest, match=r"^line 5 \(field :61:.*more decimals than GBP"):
        parse_mt940(_mt940_with_line_amount("1,505"))


@pytest.mark.parametrize("amount", ["100,00x", "100.00", "1x00,00", "100,00 GBP", ",5"])
def test_an_mt940_balance_with_a_malformed_amount_refuses_the_file(amount) -> None:
    """A balance's amount had no end either: "100,00x" was 100.00, "1x00,00" 1.00."""
    from tests.application.test_statement_imports import mt940

    rows = mt940(("C", "1,00", "R1")).decode().split("\r\n")
    rows[3] = rows[3].replace("100,00", amount)
    with pytest.raises(InvalidRequest) as refused:
        parse_mt940("\r\n".join(rows))
    assert refused.value.message.startswith("line 4 (field :60F:, the opening balance): ")
    assert "digits with a decimal comma" in refused.value.message


def _strict_mt940_pence(text: str) -> int | None:
    """SWIFT's reading of a GBP amount (15d): None when it is not one."""
    whole, comma, fraction = text.partition(",")
    if not (comma and whole.isascii() and whole.isdigit() and len(text) <= 15):
        return None
    if not (fraction == "" or (fraction.isascii() and fraction.isdigit())) or len(fraction) > 2:
        return None
    return int(whole) * 100 + int(fraction.ljust(2, "0"))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789,.xX -\u0661", max_size=20))
def test_an_mt940_amount_is_read_exactly_or_refused(written) -> None:
    """Whatever the amount field holds, a line is read as exactly its strict pence, or the
    file is refused: never another amount."""
    try:
        (statement,) = parse_mt940(_mt940_with_line_amount(written))
    except InvalidRequest:
        return
    (line,) = statement.lines
    assert _strict_mt940_pence(written) == line.amount_minor


def _bai2_with_amount(written: str) -> str:
    """The test BAI2 file with its 16 record's amount `written`, its control totals made
    for what Python's int() (the library's reader) makes of it, so only the amount differs."""
    from tests.application.test_statement_imports import bai2

    try:
        read = int(written)
    except ValueError:
        read = 1250
    text = bai2("1250").decode()
    return (
        text.replace("16,399,1250,", f"16,399,{written},", 1)
        .replace("10000,,,015,11250", f"10000,,,015,{10_000 + read}")
        .replace(",22500,", f",{20_000 + 2 * read},")
    )


@pytest.mark.parametrize("amount", ["-1250", "+1250", "1_250", " 1250", "\u0661\u0662\u0665\u0660"])
def test_a_bai2_transaction_amount_that_is_not_plain_digits_refuses_the_file(amount) -> None:
    """int() took all of these: "-1250" was a credit of minus £12.50 that imported as one
    when the file's totals agreed with it; the others' amounts were guesses."""
    with pytest.raises(InvalidRequest) as refused:
        parse_bai2(_bai2_with_amount(amount))
    message = refused.value.message
    assert message.startswith(f"line 4 (record 16, a transaction): the amount {amount!r} is not")
    assert "whole pence in digits" in message


def test_a_bai2_transaction_without_an_amount_refuses_the_file() -> None:
    """An empty amount was read as nothing, so the line as no money: dropped unseen."""
    with pytest.raises(InvalidRequest, match=r"^line 4 \(record 16.*has no amount"):
        parse_bai2(_bai2_with_amount(""))


def test_a_bai2_non_monetary_record_without_an_amount_is_read_and_imports_nothing() -> None:
    """Type 890 carries text only; BAI2 leaves its amount blank (the specification's own
    example below). Such a record is no reason to refuse the day's statement."""
    from tests.application.test_statement_imports import bai2

    note = "16,890,,,,,detail reports will be delayed until 11:00 AM./\n"
    text = bai2().decode().replace("49,22500,3/", note + "49,22500,4/")
    text = text.replace("98,22500,1,5/", "98,22500,1,6/").replace("99,22500,1,7/", "99,22500,1,8/")
    (statement,) = parse_bai2(text)
    assert [(line.type_code, line.amount_minor) for line in statement.lines] == [
        ("399", 1250),
        ("890", 0),
    ]
    assert statement.reconciles is True
    parsed = _bai2_file_import(text)
    assert [line.amount_pence for line in parsed.lines] == [1250] and not parsed.problems


@pytest.mark.parametrize(
    ("old", "new"),
    [("010,10000,", "010,1_0000,"), ("010,10000,", "010, 10000,"), ("49,22500", "49,22_500")],
)
def test_a_bai2_balance_or_total_that_is_not_plain_digits_refuses_the_file(old, new) -> None:
    content = _broken_bai2(old, new)
    with pytest.raises(InvalidRequest, match="is not a whole number of pence"):
        parse_bai2(content)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789+-_ .x\u0661", max_size=14))
def test_a_bai2_amount_is_read_exactly_or_refused(written) -> None:
    try:
        (statement,) = parse_bai2(_bai2_with_amount(written))
    except InvalidRequest:
        return
    (line,) = statement.lines
    assert written.isascii() and written.isdigit() and int(written) == line.amount_minor


def _bai2_file_import(content: str):
    from domain.imports import ImportFormat
    from domain.statements import statement_file

    return statement_file(content.encode(), ImportFormat.BAI2)


def test_a_bai2_group_without_a_currency_says_it_is_missing_and_where_to_name_gbp() -> None:
    """It said the statement was "in USD" (the library's default), which the file never
    said. An account (03) naming GBP is what the group's missing currency defaults to
    (BAI2's rule): that file imports, also when the header ends with '/' before it."""
    no_currency = _broken_bai2("2400,GBP,/", "2400,,/").replace("03,12345678,GBP,", "03,12345678,,")
    (problem,) = _bai2_file_import(no_currency).problems
    assert "the currency is missing" in problem.reason
    assert "line 2 (record 02, a group header) field 7" in problem.reason
    assert "must name GBP" in problem.reason and "is in USD" not in problem.reason
    for header in ("2400,,/", "2400/"):
        parsed = _bai2_file_import(_broken_bai2("2400,GBP,/", header))
        assert parsed.problems == () and [line.amount_pence for line in parsed.lines] == [1250]
    ended_early = _broken_bai2("2400,GBP,/", "2400/").replace("03,12345678,GBP,", "03,12345678,,")
    (problem,) = _bai2_file_import(ended_early).problems
    assert "the currency is missing" in problem.reason


@pytest.mark.parametrize("amount", ["-25.00", "-0.01"])
def test_a_camt_entry_with_a_negative_amount_refuses_the_file_naming_the_entry(amount) -> None:
    """A "-25.00" credit was a credit of minus £25.00 (its side is CdtDbtInd)."""
    from tests.application.test_statement_imports import camt, entry

    content = camt(entry("25.00", ref="B1"), closing="975.00").replace(
        b">25.00<", f">{amount}<".encode()
    )
    with pytest.raises(InvalidRequest, match=r"^statement S1, entry 1 \(Ntry\): .*minus sign"):
        parse_camt053(content)
    balance = camt(entry("25.00", ref="B1"), opening="0.00").replace(b">0.00<", b">-0.01<")
    with pytest.raises(InvalidRequest, match=r"^statement S1, balance OPBD \(Bal\): .*minus"):
        parse_camt053(balance)


def test_a_camt_date_time_that_is_not_one_refuses_the_file() -> None:
    """Its first ten characters were read, whatever followed them."""
    from tests.application.test_statement_imports import TODAY, camt, entry

    content = camt(entry("25.00", ref="B1")).replace(
        f"<BookgDt><Dt>{TODAY}</Dt>".encode(), f"<BookgDt><DtTm>{TODAY}x</DtTm>".encode()
    )
    with pytest.raises(InvalidRequest, match="entry 1 .* in BookgDt is not a date"):
        parse_camt053(content)
    fine = content.replace(f"{TODAY}x".encode(), f"{TODAY}T10:30:00+01:00".encode())
    (statement,) = parse_camt053(fine)
    assert statement.lines[0].booking_date == TODAY


@pytest.mark.parametrize("day", ["26111", "2612 1", "\u0662\u0666" + "1201"])
def test_a_bai2_as_of_date_not_written_yymmdd_refuses_the_file(day) -> None:
    """strptime's %y%m%d took "26111" as 1 November 2026 (11 January is as likely), and
    other scripts' digits: the as-of date is every line's booking date."""
    from tests.application.test_statement_imports import TODAY

    old = f"02,COUNCIL,SENDER,1,{TODAY.strftime('%y%m%d')},"
    with pytest.raises(InvalidRequest) as refused:
        parse_bai2(_broken_bai2(old, f"02,COUNCIL,SENDER,1,{day},"))
    message = refused.value.message
    assert message.startswith(f"line 2 (record 02, a group header): the as-of date {day!r}")
    assert "YYMMDD" in message


@pytest.mark.parametrize(("index", "field"), [(4, ":61:"), (3, ":60F:")])
def test_an_mt940_date_in_other_digits_refuses_the_file(index, field) -> None:
    """The library's \\d took Arabic-Indic digits, which int() reads."""
    from tests.application.test_statement_imports import mt940

    rows = mt940(("C", "1,00", "R1")).decode().split("\r\n")
    at = len(field) + (1 if field == ":60F:" else 0)
    rows[index] = rows[index][:at] + "\u0662\u0666" + rows[index][at + 2 :]
    with pytest.raises(InvalidRequest) as refused:
        parse_mt940("\r\n".join(rows))
    assert refused.value.message.startswith(f"line {index + 1} (field {field}")
    assert "is not written in the digits 0-9" in refused.value.message


def _renamespaced(content: bytes, namespaces: list[str | None]) -> bytes:
    """The document with each element (in document order) put in the namespace drawn for
    it (None: no namespace), cycling through `namespaces`."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(content)
    for n, element in enumerate(root.iter()):
        local = element.tag.rsplit("}", 1)[-1]
        namespace = namespaces[n % len(namespaces)]
        element.tag = local if namespace is None else f"{{{namespace}}}{local}"
    return ET.tostring(root, encoding="utf-8")


@needs_samples
@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(n for n in KNOWN if n.startswith("camt053/"))),
    namespaces=st.lists(
        st.sampled_from(
            [None, "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02", "urn:other", "urn:x:y.z"]
        ),
        min_size=1,
        max_size=7,
    ),
)
def test_a_camt_statement_reads_the_same_whatever_namespace_each_element_is_in(
    name: str, namespaces: list[str | None]
) -> None:
    """Elements are found by their local name, in any namespace or none (the parser drops
    the namespaces before it looks: docs/performance.md, helper stmtspeed)."""
    content = (STATEMENTS / name).read_bytes()
    assert parse_camt053(_renamespaced(content, namespaces)) == parse_camt053(content)


def test_a_camt_path_is_read_at_its_first_element_in_document_order() -> None:
    """An entry's remittance or reference under a later repeat of an element (a second
    RmtInf, Refs or BkTxCd) is found: the first at the path in document order, not only
    under the first of each step."""
    from tests.application.test_statement_imports import camt, entry

    content = camt(entry("25.00", ref="B1", text="FIRST")).replace(
        b"<RmtInf><Ustrd>FIRST</Ustrd></RmtInf>",
        b"<RmtInf><Ustrd>FIRST</Ustrd></RmtInf><RmtInf><Strd><CdtrRefInf><Ref>RF18539007547034"
        b"</Ref></CdtrRefInf></Strd></RmtInf>",
    )
    (statement,) = parse_camt053(content.replace(b"FIRST", b""))
    assert statement.lines[0].details[0].narrative == "RF18539007547034"
    (statement,) = parse_camt053(content)
    assert statement.lines[0].details[0].narrative == "FIRST"
