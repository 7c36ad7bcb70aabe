"""Application tests: the use cases against real storage, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from application.ledger import CommandContext, IncomeLedger, RecordPayment, fingerprint
from application.payer_details import PayerDetails
from domain.errors import (
    AllocationExceedsUnallocated,
    ConcurrentUpdate,
    IdempotencyKeyReused,
    InvalidRequest,
    PaymentAlreadyReversed,
    PaymentNotFound,
    UnknownFund,
)
from domain.postings import postings_for
from income_ledger.bootstrap import build_ledger
from tests.domain.helpers import CT_REF, CT_REF_2, HRA_REF, SUN_REF

YESTERDAY = datetime.now(UTC) - timedelta(days=1)


def record(ledger: IncomeLedger, ctx: CommandContext, **overrides):
    command = {"channel": "cheque", "amount_pence": 10_000, "reference": "UNKNOWN"} | overrides
    return ledger.record_payment(RecordPayment(**command), ctx)


def test_a_receipt_is_recorded_allocated_and_read_back(ledger, officer) -> None:
    outcome = record(ledger, officer, reference=CT_REF, received_at=YESTERDAY, channel="cash")
    assert outcome.recorded and outcome.position == ledger.max_position()
    payment = ledger.get_payment(outcome.payment_id)
    assert payment["status"] == "allocated"
    assert payment["allocations"] == [
        {"fund_code": "CT", "reference": CT_REF, "amount_pence": 10_000, "vat_pence": 0}
    ]
    assert [h["action"] for h in payment["history"]] == ["Received", "Allocated"]
    assert payment["history"][0]["actor"] == "officer:test"
    assert payment["received_at"] == YESTERDAY.isoformat()


def test_every_command_works_end_to_end_and_keeps_history(ledger, officer) -> None:
    pid = record(ledger, officer).payment_id
    ledger.allocate(pid, [("CT", CT_REF, 6_000), ("SUN", SUN_REF, 3_000)], officer, "advice")
    ledger.transfer(pid, ("CT", CT_REF), ("HRA", HRA_REF), 1_000, officer, "wrong account")
    ledger.refund(pid, 500, officer, "overpaid", source=("SUN", SUN_REF))
    ledger.note(pid, "payer called", officer)
    ledger.reverse(pid, "returned_cheque", officer, "returned unpaid")
    payment = ledger.get_payment(pid)
    assert payment["status"] == "reversed"
    assert payment["refunded_pence"] == 500 and payment["reversed_pence"] == 9_500
    actions = [h["action"] for h in payment["history"]]
    assert actions == ["Received", "Allocated", "Transferred", "Refunded", "Noted", "Reversed"]
    assert payment["history"][2]["reason"] == "wrong account"
    with pytest.raises(PaymentAlreadyReversed):
        ledger.refund(pid, 1, officer, "again")


def test_the_same_external_payment_is_recorded_once(ledger, officer) -> None:
    first = record(ledger, officer, channel="govuk_pay", external_id="pay_1", reference=CT_REF)
    again = record(ledger, officer, channel="govuk_pay", external_id="pay_1", reference=CT_REF)
    assert first.recorded and not again.recorded
    assert again.payment_id == first.payment_id and again.position is None
    assert ledger.max_position() == first.position


def test_an_idempotency_key_makes_a_retry_safe_and_refuses_another_body(ledger) -> None:
    ctx = CommandContext("officer:test", idempotency_key="req-1")
    first = record(ledger, ctx)
    assert not record(ledger, ctx).recorded
    with pytest.raises(IdempotencyKeyReused):
        record(ledger, CommandContext("officer:test", "req-1"), amount_pence=5)
    key = CommandContext("officer:test", idempotency_key="alloc-1")
    ledger.allocate(first.payment_id, [("CT", CT_REF, 100)], key)
    repeat = ledger.allocate(first.payment_id, [("CT", CT_REF, 100)], key)
    assert not repeat.recorded and repeat.payment["allocated_pence"] == 100
    with pytest.raises(IdempotencyKeyReused):
        ledger.allocate(first.payment_id, [("CT", CT_REF, 200)], key)


def test_a_rejected_command_stores_nothing(ledger, officer) -> None:
    pid = record(ledger, officer).payment_id
    before = ledger.max_position()
    with pytest.raises(AllocationExceedsUnallocated):
        ledger.allocate(pid, [("CT", CT_REF, 6_000), ("CT", CT_REF_2, 4_001)], officer)
    with pytest.raises(UnknownFund):
        ledger.allocate(pid, [("XX", CT_REF, 1)], officer)
    with pytest.raises(InvalidRequest):
        record(ledger, officer, channel="pigeon")
    with pytest.raises(PaymentNotFound):
        ledger.refund(uuid4(), 1, officer, "r")
    assert ledger.max_position() == before


def test_a_batch_is_all_or_nothing(ledger, officer) -> None:
    good = RecordPayment("allpay", 100, CT_REF, external_id="line-1")
    bad = RecordPayment("allpay", -1, CT_REF, external_id="line-2")
    before = ledger.max_position()
    with pytest.raises(InvalidRequest):
        ledger.record_payments([good, bad], officer)
    assert ledger.max_position() == before
    outcomes = ledger.record_payments(
        [good, RecordPayment("allpay", 5, "X", external_id="l3")], officer
    )
    assert [o.recorded for o in outcomes] == [True, True]
    again = ledger.record_payments([good], officer)
    assert [o.recorded for o in again] == [False]


def test_payer_details_live_apart_and_can_be_erased(ledger, officer) -> None:
    payer = PayerDetails(name="A. Patel", email="a@example.org")
    pid = record(ledger, officer, payer=payer).payment_id
    assert ledger.get_payment(pid)["payer"] == {"name": "A. Patel", "email": "a@example.org"}
    stored = [event for _, event in ledger.read_events()]
    assert not any("Patel" in repr(vars(event)) for event in stored)
    outcome = ledger.erase_payer_details(pid, officer, "subject access erasure request")
    assert outcome.recorded
    payment = ledger.get_payment(pid)
    assert payment["payer"] is None and payment["amount_pence"] == 10_000
    assert payment["history"][-1]["action"] == "PayerDetailsErased"


def test_payer_details_are_not_stored_when_the_payment_is_refused(ledger, officer) -> None:
    with pytest.raises(InvalidRequest):
        record(ledger, officer, amount_pence=0, payer=PayerDetails(name="B. Jones"))
    with ledger._transaction(commit=False) as session:
        from sqlalchemy import text

        assert session.execute(text("SELECT count(*) FROM payer_details")).scalar() == 0


def test_two_writers_of_one_payment_cannot_both_succeed(ledger, settings, officer) -> None:
    pid = record(ledger, officer).payment_id
    other = build_ledger(settings)
    try:
        mine = ledger._payment(pid)
        theirs = other._payment(pid)
        funds = ledger.chart()
        from domain.payment import AllocationRequest

        for payment in (mine, theirs):
            payment.allocate(
                [(funds.fund("CT"), AllocationRequest("CT", CT_REF, 10_000))], actor="o", reason="r"
            )
        ledger.save_checked(mine)
        with pytest.raises(ConcurrentUpdate, match="retry"):
            other.save_checked(theirs)
    finally:
        other.close()
    assert ledger.get_payment(pid)["allocated_pence"] == 10_000


def test_funds_are_configured_by_events(ledger, officer) -> None:
    ledger.amend_fund("SUN", {"vat_rate_basis_points": 500}, officer, "reduced rate")
    ledger.disable_fund("BOP", officer, "scheme closed")
    assert ledger.fund("SUN")["vat_rate_basis_points"] == 500
    assert ledger.fund("BOP")["enabled"] is False
    bop = record(ledger, officer, reference="BO123456").payment
    assert bop["suspense_reason"] == "disabled_fund"
    sun = record(ledger, officer, reference=SUN_REF, amount_pence=10_500).payment
    assert sun["allocations"][0]["vat_pence"] == 500


def test_events_read_back_balance_and_in_order(ledger, officer) -> None:
    for n in range(5):
        record(ledger, officer, reference=CT_REF, external_id=f"e{n}")
    positions = []
    total = 0
    for position, event in ledger.read_events(page_size=3):
        positions.append(position)
        total += sum(p.amount_pence for p in postings_for(event))
    assert positions == sorted(positions) and len(positions) == len(set(positions))
    assert total == 0


def test_a_chart_change_by_another_process_is_seen_at_once(ledger, settings, officer) -> None:
    assert ledger.fund("SUN")["vat_rate_basis_points"] == 2000
    other = build_ledger(settings)
    try:
        other.amend_fund("SUN", {"vat_rate_basis_points": 500}, officer, "reduced rate")
        other.disable_fund("BOP", officer, "scheme closed")
    finally:
        other.close()
    assert ledger.fund("SUN")["vat_rate_basis_points"] == 500
    assert ledger.fund("BOP")["enabled"] is False
    outcome = record(ledger, officer, reference=SUN_REF, amount_pence=10_500)
    assert outcome.payment["allocations"][0]["vat_pence"] == 500


def test_a_query_gets_a_chart_no_older_than_the_read_model(ledger, settings, officer) -> None:
    """chart_covering(position) may keep its chart only while the read model has not moved
    past the position it was checked at: a fund changed by another process before a later
    position is seen there, and not asked for again at a covered position."""
    covered = ledger.notification_log.recorder.max_notification_id() or 0
    assert ledger.chart_covering(covered).fund("SUN").vat_rate_basis_points == 2000
    other = build_ledger(settings)
    try:
        other.amend_fund("SUN", {"vat_rate_basis_points": 500}, officer, "reduced rate")
    finally:
        other.close()
    # The read model has not applied the change yet: the chart it was read with still fits.
    assert ledger.chart_covering(covered).fund("SUN").vat_rate_basis_points == 2000
    moved_on = ledger.notification_log.recorder.max_notification_id()
    assert moved_on > covered
    assert ledger.chart_covering(moved_on).fund("SUN").vat_rate_basis_points == 500
    assert ledger.funds(covering=moved_on) == ledger.funds()


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=8).filter(lambda key: key != "command"),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text()
        | st.lists(st.text() | st.integers())
        | st.datetimes()
        | st.uuids()
        | st.dictionaries(st.text(max_size=4), st.none() | st.integers() | st.text(), max_size=3),
        max_size=8,
    )
)
def test_a_fingerprint_is_the_digest_of_the_sorted_json_of_its_command(arguments) -> None:
    """The fingerprint's JSON is json.dumps' (its encoder made once, #9): any value, nested,
    non-ASCII text, floats, and values written through `default=str`."""
    canonical = json.dumps({"command": "record", **arguments}, sort_keys=True, default=str)
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert fingerprint("record", **arguments) == expected
