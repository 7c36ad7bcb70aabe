"""Allpay and CSV files read into lines (no database): every amount, count and date read
exactly as written or the line refused."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from domain.imports import parse_allpay, parse_csv
from domain.money import pounds_to_pence
from tests.application.test_imports import DAY, allpay_file, allpay_line, csv_file
from tests.domain.helpers import CT_REF


def _trailer_file(total_row: str, count_row: str) -> str:
    details = [allpay_line(CT_REF, "60.00"), allpay_line(CT_REF, "60.00")]
    return "\r\n".join([*details, "", total_row, count_row, ""])


@pytest.mark.parametrize(
    ("total_row", "count_row"),
    [
        ("Total Amount Updated onto System:120.00", "Total Transactions updated onto System: 2"),
        (
            "Total Amount Updated onto System:                       120.00",
            "Total Transactions updated onto System:                        2",
        ),
    ],
)
def test_an_allpay_trailer_value_out_of_its_columns_is_read_whole(total_row, count_row) -> None:
    """The total was cut to columns 34-51: "...System:120.00" read as 20.00, and a file
    that added up was refused naming a total it never said."""
    parsed = parse_allpay(_trailer_file(total_row, count_row))
    assert parsed.problems == ()
    assert (parsed.control_total_pence, parsed.control_count) == (12_000, 2)


@pytest.mark.parametrize("count", ["\u00b2", "\u0662"])
def test_an_allpay_trailer_count_that_is_not_plain_digits_is_a_problem_not_a_crash(count) -> None:
    """str.isdigit() took "²", which int() then refused: a ValueError, not a refusal."""
    parsed = parse_allpay(
        _trailer_file(
            "Total Amount Updated onto System:             120.00",
            f"Total Transactions updated onto System: {count:>17}",
        )
    )
    assert any(f"total count {count!r} is not a number" in p.reason for p in parsed.problems)
    assert parsed.control_count is None


def test_an_allpay_amount_that_overflows_its_columns_is_named_when_the_total_disagrees() -> None:
    """1234567.89 does not fit columns 24-32: its first digit ends the reference and the
    line reads 234567.89. The trailer's total (the real amounts') then disagrees, and the
    line is named with what may have happened."""
    row = f"{'335610':>7}{'123456789012345':<15}{'1234567.89':>10}P{DAY}"
    assert row[23:32] == "234567.89"
    parsed = parse_allpay(allpay_file(row, total="1234567.89").decode())
    total, suspect = parsed.problems
    assert total.line_number == 0 and "does not match the lines" in total.reason
    assert suspect.line_number == 1 and "million pounds or more (1234567.89)" in suspect.reason


@pytest.mark.parametrize("bern", [False, True])
def test_an_allpay_amount_of_over_100000_pounds_after_a_full_reference_is_read(bern) -> None:
    """A 9-character amount fits columns 24-32 even after a reference that fills its
    columns and ends in a digit (review finding on be4f857: refused as "a million")."""
    reference = "BERN123456789012" if bern else "1234567890123456"
    row = f"{'335610':>7}{reference}{'123456.78':>9}P{DAY}"
    parsed = parse_allpay(allpay_file(row, total="123456.78").decode())
    assert not parsed.problems
    (line,) = parsed.lines
    assert line.amount_pence == 12_345_678
    assert line.reference == reference.removeprefix("BERN")


@pytest.mark.parametrize("day", ["20261130", "2026-W48-1"])
def test_a_csv_date_not_written_yyyy_mm_dd_is_refused(day) -> None:
    """date.fromisoformat took 20261130 and 2026-W48-1 (a Monday, read as that day)."""
    content = csv_file(f"cash,12.50,{CT_REF},{day},,").decode()
    parsed = parse_csv(content, 1250, 1)
    (problem,) = parsed.problems
    assert problem.line_number == 2 and "is not a date like 2026-03-31" in problem.reason


@settings(max_examples=200, deadline=None)
@given(pounds=st.integers(0, 999_999), pence=st.integers(0, 99), pad=st.integers(0, 5))
def test_an_allpay_amount_is_read_as_pounds_to_pence_reads_it(
    pounds: int, pence: int, pad: int
) -> None:
    """The detail line's amount is read from its digits directly (#10, one file's 100,000
    lines): the same pence as `pounds_to_pence`, leading zeros and all."""
    assume(pounds or pence)
    amount = f"{pounds:0{pad}d}.{pence:02d}"  # at most the layout's 9 columns
    parsed = parse_allpay(allpay_file(allpay_line(CT_REF, amount)).decode())
    assert not parsed.problems
    (line,) = parsed.lines
    assert line.amount_pence == pounds_to_pence(amount)
