"""A file's dates are UK dates: one after today's UK date is refused whatever the time of day
(issue #10), in every format (no database).

The clock skew a recorded moment is allowed (domain.limits.CLOCK_SKEW, five minutes) took
tomorrow's file in the last five minutes of the UK day, the start of tomorrow being less
than five minutes away. A date is not a moment: today's UK date is the latest a file may
hold, at 23:57 as at noon, in GMT and in BST.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from domain.imports import ImportFormat, ParsedFile, parse_file
from domain.limits import UK, uk_day_start
from domain.statements import statement_file
from tests.application.test_imports import allpay_file, allpay_line, csv_file
from tests.application.test_statement_imports import camt, entry
from tests.domain.helpers import CT_REF

# The last minutes of a UK day and other times, in GMT and BST and on the eves of the clock
# changes (29 March and 25 October 2026).
NOWS = {
    "winter 23:57": datetime(2026, 11, 25, 23, 57, tzinfo=UK),
    "summer 23:57": datetime(2026, 7, 15, 23, 57, tzinfo=UK),
    "eve of BST 23:57": datetime(2026, 3, 28, 23, 57, tzinfo=UK),
    "eve of GMT 23:57": datetime(2026, 10, 24, 23, 57, tzinfo=UK),
    "summer 23:59:59": datetime(2026, 7, 15, 23, 59, 59, tzinfo=UK),
    "winter 00:03": datetime(2026, 11, 25, 0, 3, tzinfo=UK),
    "summer noon": datetime(2026, 7, 15, 12, 0, tzinfo=UK),
}


def _mt940(day: date) -> bytes:
    """An MT940 statement in GBP with one credit booked on `day`."""
    yymmdd = day.strftime("%y%m%d")
    rows = [
        ":20:STMT1",
        ":25:20201555555555",
        ":28C:1/1",
        f":60F:C{yymmdd}GBP100,00",
        f":61:{yymmdd}{yymmdd[2:]}C12,50NTRFNONREF//REF1",
        f":86:{CT_REF}",
        f":62F:C{yymmdd}GBP112,50",
    ]
    return ("\r\n".join(rows) + "\r\n-").encode()


def _bai2(day: date) -> bytes:
    """A BAI2 file in GBP with one credit of 12.50 on the group's as-of date, `day`."""
    yymmdd = day.strftime("%y%m%d")
    rows = [
        f"01,SENDER,COUNCIL,{yymmdd},1200,1,,,2/",
        f"02,COUNCIL,SENDER,1,{yymmdd},2400,GBP,/",
        "03,12345678,GBP,010,10000,,,015,11250,,/",
        f"16,399,1250,,BANKREF1,,{CT_REF}/",
        "49,22500,3/",
        "98,22500,1,5/",
        "99,22500,1,7/",
    ]
    return ("\n".join(rows) + "\n").encode()


def _read(file_format: ImportFormat, day: date, now: datetime) -> ParsedFile:
    """A one-line file of `file_format` dated `day`, read at `now`."""
    if file_format is ImportFormat.ALLPAY:
        content = allpay_file(allpay_line(CT_REF, "12.50", day=day.strftime("%d/%m/%Y")))
        return parse_file(content.decode(), file_format, now=now)
    if file_format is ImportFormat.CSV:
        content = csv_file(f"cash,12.50,{CT_REF},{day.isoformat()},,")
        return parse_file(
            content.decode(), file_format, expect_total_pence=1250, expect_count=1, now=now
        )
    content = {
        ImportFormat.CAMT053: lambda: camt(entry("12.50", day=day, ref="R1", text=CT_REF)),
        ImportFormat.BAI2: lambda: _bai2(day),
        ImportFormat.MT940: lambda: _mt940(day),
    }[file_format]()
    return statement_file(content, file_format, now=now)


@pytest.mark.parametrize("file_format", list(ImportFormat))
@pytest.mark.parametrize("when", NOWS)
def test_a_file_dated_tomorrow_is_refused_at_any_time_of_the_uk_day(file_format, when) -> None:
    now = NOWS[when]
    today, tomorrow = now.date(), now.date() + timedelta(days=1)
    refused = _read(file_format, tomorrow, now)
    assert [problem.reason for problem in refused.problems] == [
        f"the date {tomorrow.isoformat()} is later than today ({today.isoformat()}, UK): a "
        "file lists money already received; give the UK day it was received, from "
        "2000-01-01 to today"
    ]
    accepted = _read(file_format, today, now)
    assert accepted.problems == ()
    assert [line.received_at for line in accepted.lines] == [uk_day_start(today)]


@pytest.mark.parametrize("file_format", [ImportFormat.ALLPAY, ImportFormat.CSV])
def test_a_date_before_2000_is_still_refused(file_format) -> None:
    refused = _read(file_format, date(1999, 12, 31), NOWS["summer noon"])
    assert [problem.reason for problem in refused.problems] == [
        "the date 1999-12-31 is before 2000: a file lists money already received; give the "
        "UK day it was received, from 2000-01-01 to today"
    ]
