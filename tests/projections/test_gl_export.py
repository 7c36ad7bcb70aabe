"""The daily general-ledger export, from the read model's postings, on both backends."""

from __future__ import annotations

import csv
import io
import itertools
import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from application.gl_export import export_day, gl_exports, parse_control_codes
from application.ledger import CommandContext, RecordPayment
from application.periods import close_period
from domain.errors import InvalidRequest, LedgerError
from domain.gl_export import CHANNEL_ROLES, COLUMNS, account_role, parse_columns
from domain.periods import uk_date
from domain.postings import effective_at, postings_for
from projections.gl_rows import ReadModelPostings
from tests.domain.helpers import CT_REF, HRA_REF, SUN_REF

OFFICER = CommandContext("officer:gl")
FINANCE = CommandContext("supervisor:finance")
ACCOUNTS = [("CT", CT_REF), ("SUN", SUN_REF), ("HRA", HRA_REF)]
CHANNELS = ["cash", "cheque", "govuk_pay"]


def noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def lines_of(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode())))


def export(ledger, projection, day: date, **kwargs):
    projection.catch_up()
    return export_day(ledger, ReadModelPostings(projection.engine), day, FINANCE, **kwargs)


def test_a_day_s_journal_balances_with_vat_apart_and_is_the_same_when_exported_again(
    ledger, projection
) -> None:
    day = date(2025, 9, 1)
    paid = ledger.record_payment(
        RecordPayment("cash", 12_000, SUN_REF, received_at=noon(day)), OFFICER
    )
    ledger.record_payment(RecordPayment("cheque", 5_000, "JUNK", received_at=noon(day)), OFFICER)
    ledger.refund(paid.payment_id, 1_200, OFFICER, "overpaid", effective=noon(day))
    first = export(ledger, projection, day, control_codes={"cash:cash": "1101"})
    lines = lines_of(first.content)
    assert tuple(lines[0]) == COLUMNS and first.first_time
    assert sum(int(line["amount_pence"]) for line in lines) == 0
    by_role = {(line["account_role"], line["gl_code"]): line for line in lines}
    assert by_role[("cash", "1101")]["debit"] == "120.00"
    assert by_role[("income", "R4010")]["cost_centre"] == "F4000"
    assert by_role[("income", "R4010")]["credit"] == "90.00"  # 108.00 gross less 18.00 VAT
    assert by_role[("vat", "VAT-OUTPUT")]["credit"] == "18.00"
    assert by_role[("refunds", "REFUNDS")]["credit"] == "12.00"
    assert by_role[("suspense", "SUSPENSE")]["credit"] == "50.00"
    again = export(ledger, projection, day)
    assert again.content == first.content and not again.first_time
    assert [e["sha256"] for e in gl_exports(ledger)] == [first.record["sha256"]]
    assert first.record["exported_by"] == "supervisor:finance"


def test_a_late_movement_for_an_exported_day_is_an_adjustment_in_the_next_export(
    ledger, projection
) -> None:
    day, next_day = date(2025, 9, 8), date(2025, 9, 9)
    ledger.record_payment(RecordPayment("cash", 1_000, CT_REF, received_at=noon(day)), OFFICER)
    first = export(ledger, projection, day)
    ledger.record_payment(RecordPayment("cheque", 700, CT_REF, received_at=noon(day)), OFFICER)
    ledger.record_payment(RecordPayment("cash", 300, CT_REF, received_at=noon(next_day)), OFFICER)
    second = lines_of(export(ledger, projection, next_day).content)
    adjustments = [line for line in second if line["line_type"] == "adjustment"]
    assert {line["relates_to_date"] for line in adjustments} == {"2025-09-08"}
    assert sorted(int(line["amount_pence"]) for line in adjustments) == [-700, 700]
    assert export(ledger, projection, day).content == first.content  # the old file stands


def test_only_an_ended_day_is_exported(ledger, projection) -> None:
    with pytest.raises(InvalidRequest, match="has not ended"):
        export(ledger, projection, uk_date(datetime.now(UTC)))


_windows = itertools.count()


@hypothesis_settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), close_first_day=st.booleans())
def test_every_day_s_export_sums_to_zero_and_equals_its_movements(
    ledger, projection, seed, close_first_day
) -> None:
    """Random receipts, allocations, refunds and reversals over four days, some recorded late
    for a day already exported; each export balances per day it relates to, and all exports
    together hold exactly each day's postings, reckoned here straight from the events."""
    rng = random.Random(seed)
    start = date(2010, 1, 1) + timedelta(days=10 * next(_windows))
    days = [start + timedelta(days=n) for n in range(4)]
    first_position = ledger.max_position()
    payments = []
    contents = []
    for index, day in enumerate(days):
        for _ in range(rng.randint(1, 4)):
            received = day if index == 0 or rng.random() < 0.7 else days[index - 1]
            try:
                outcome = ledger.record_payment(
                    RecordPayment(
                        rng.choice(CHANNELS),
                        rng.randint(1, 50_000),
                        rng.choice([ref for _, ref in ACCOUNTS] + ["JUNK"]),
                        received_at=noon(received),
                    ),
                    OFFICER,
                )
                payments.append(outcome.payment_id)
            except LedgerError:
                assert close_first_day and received == days[0]
        for payment_id in rng.sample(payments, min(3, len(payments))):
            _random_move(ledger, rng, payment_id, noon(day))
        contents.append(export(ledger, projection, day).content)
        if index == 0 and close_first_day:
            close_period(ledger, "day", day, FINANCE, "cashed up")
    exported: dict[tuple, int] = defaultdict(int)
    for content in contents:
        per_day: dict[str, int] = defaultdict(int)
        for line in lines_of(content):
            per_day[line["relates_to_date"]] += int(line["amount_pence"])
            key = (
                line["relates_to_date"],
                line["account_role"],
                line["fund_code"],
                line["channel"],
            )
            exported[key] += int(line["amount_pence"])
        assert all(total == 0 for total in per_day.values())
    assert {k: v for k, v in exported.items() if v} == _movements_by_day(ledger, first_position)


def _random_move(ledger, rng: random.Random, payment_id, when: datetime) -> None:
    payment = ledger.get_payment(payment_id)
    fund, reference = rng.choice(ACCOUNTS)
    roll = rng.random()
    try:
        if payment["unallocated_pence"] and roll < 0.5:
            amount = rng.randint(1, payment["unallocated_pence"])
            ledger.allocate(payment_id, [(fund, reference, amount)], OFFICER, effective=when)
        elif roll < 0.8:
            remaining = (
                payment["amount_pence"] - payment["refunded_pence"] - payment["reversed_pence"]
            )
            if remaining:
                ledger.refund(
                    payment_id, rng.randint(1, min(remaining, 40_000)), OFFICER, "r", effective=when
                )
        else:
            ledger.reverse(payment_id, "returned_cheque", OFFICER, "bounced", effective=when)
    except LedgerError:
        pass  # a move the rules refuse (already reversed...) records nothing


def _movements_by_day(ledger, after_position: int) -> dict[tuple, int]:
    """Each day's postings net per role, fund and channel, straight from the events."""
    totals: dict[tuple, int] = defaultdict(int)
    for _position, event in ledger.read_events(after=after_position):
        day = uk_date(effective_at(event)).isoformat()
        for posting in postings_for(event):
            role = account_role(posting.account)
            fund = posting.fund_code or "" if role in ("income", "vat") else ""
            channel = posting.account.split(":", 1)[1] if role in CHANNEL_ROLES else ""
            totals[(day, role, fund, channel)] += posting.amount_pence
    return {k: v for k, v in totals.items() if v}


def test_control_codes_are_json_of_known_roles_and_serve_refuses_others() -> None:
    from income_ledger.server import ConfigurationError, api_config
    from income_ledger.settings import Settings

    assert parse_control_codes('{"cash": "1100", "cash:govuk_pay": " 1105 "}') == {
        "cash": "1100",
        "cash:govuk_pay": "1105",
    }
    assert parse_control_codes("") == {}
    for bad in ('{"income": "1"}', "cash=1100", '{"vat": ""}', "[]"):
        with pytest.raises(InvalidRequest, match="LEDGER_GL_CONTROL_CODES"):
            parse_control_codes(bad)
    with pytest.raises(ConfigurationError, match="LEDGER_GL_CONTROL_CODES"):
        api_config(Settings(gl_control_codes='{"cash:x": 5}'))


def test_a_column_mapping_is_kept_with_the_export_so_the_old_file_stands(
    ledger, projection
) -> None:
    day = date(2025, 9, 15)
    ledger.record_payment(RecordPayment("cash", 1_000, CT_REF, received_at=noon(day)), OFFICER)
    columns = parse_columns("Date=export_date,Account=gl_code,Centre=cost_centre,debit,credit")
    first = export(ledger, projection, day, columns=columns)
    assert first.content.decode().splitlines() == [
        "Date,Account,Centre,debit,credit",
        "2025-09-15,CASH,,10.00,",
        "2025-09-15,R1010,C1000,,10.00",
    ]
    assert export(ledger, projection, day).content == first.content  # the mapping it was made with
    for bad in ("Date=when", "=gl_code", "A=debit,A=credit"):
        with pytest.raises(InvalidRequest, match="LEDGER_GL_COLUMNS"):
            parse_columns(bad)
