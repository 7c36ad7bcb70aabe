"""Events carry typed values (AllocatedLine, ReversedPart, SettledItem, ChannelResult,
ImportedLine) but keep the JSON shape every stored event already has, so databases written by
earlier releases still load (#13)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from eventsourcing_sqlalchemy.recorders import SQLAlchemyApplicationRecorder
from sqlalchemy import text

from application.cashups import SubmitCashUp, approve_cashup, submit_cashup
from application.imports import get_import, import_file
from application.ledger import CommandContext, IncomeLedger, RecordPayment
from application.offices import add_office, add_till
from domain.allocation_lines import AllocatedLine, ReversedPart, VatPart
from domain.cashups import CashUp, ChannelResult
from domain.imports import ImportBatch, ImportedLine, StatementLink
from domain.limits import uk_day_start
from domain.payment import Payment, SettledItem
from domain.postings import postings_for
from tests.application.test_card_payouts import pay, send
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_statement_imports import TODAY, YESTERDAY, camt, entry, govuk_pay
from tests.domain.helpers import CT_REF, SUN_REF

# The shapes stored since the first release: plain dicts, keys in this order.
SUN_LINE = {
    "fund_code": "SUN",
    "reference": SUN_REF,
    "amount_pence": 12_000,
    "vat_rate_basis_points": 2000,
    "vat_pence": 2_000,
}
CT_LINE = {
    "fund_code": "CT",
    "reference": CT_REF,
    "amount_pence": 6_000,
    "vat_rate_basis_points": 0,
    "vat_pence": 0,
}


ALLOCATED = get_topic(Payment.Allocated)
REVERSED = get_topic(Payment.Reversed)


def stored_states(ledger: IncomeLedger, payment_id: uuid.UUID) -> list[tuple[str, Any]]:
    return [
        (stored.topic, json.loads(stored.state))
        for stored in ledger.recorder.select_events(payment_id)
    ]


def copy_events(
    ledger: IncomeLedger,
    original: uuid.UUID,
    copy_id: uuid.UUID,
    hand_written: dict[str, dict[str, Any]],
) -> None:
    """Store a copy of an aggregate's events under `copy_id`, the fields `hand_written` gives
    (by topic) replaced as an earlier release wrote them."""
    copies = []
    for version, (topic, state) in enumerate(stored_states(ledger, original), start=1):
        state.update(hand_written.get(topic, {}))
        copies.append(StoredEvent(copy_id, version, topic, json.dumps(state).encode()))
    ledger.recorder.insert_events(copies)


def allocated_then_reversed(ledger: IncomeLedger, officer) -> uuid.UUID:
    command = RecordPayment("cheque", 20_000, "NO SUCH ACCOUNT")
    payment_id = ledger.record_payment(command, officer).payment_id
    lines = [("SUN", SUN_REF, 12_000), ("CT", CT_REF, 6_000)]
    ledger.allocate(payment_id, lines, officer, "remittance advice")
    ledger.reverse(payment_id, "returned_cheque", officer, "cheque bounced")
    return payment_id


def test_new_events_are_stored_in_the_shape_of_earlier_releases(ledger, officer) -> None:
    payment_id = allocated_then_reversed(ledger, officer)
    states = dict(stored_states(ledger, payment_id))
    assert states[ALLOCATED]["lines"] == [SUN_LINE, CT_LINE]
    # The same keys in the same order: the same bytes as an earlier release wrote.
    assert [list(line) for line in states[ALLOCATED]["lines"]] == [list(SUN_LINE), list(CT_LINE)]
    assert states[REVERSED]["parts"] == [
        {k: v for k, v in line.items() if k != "vat_rate_basis_points"}
        for line in (SUN_LINE, CT_LINE)
    ]


def test_events_stored_as_plain_dicts_load_as_typed_values(ledger, officer) -> None:
    """A copy of a payment's events, its lists written by hand as an earlier release stored
    them (a reversed part with the VAT parts it took, too), loads and replays."""
    original = allocated_then_reversed(ledger, officer)
    copy_id = uuid.uuid4()
    taken = [{"vat_rate_basis_points": 2000, "amount_pence": 12_000, "vat_pence": 2_000}]
    hand_written = {
        ALLOCATED: {"lines": [SUN_LINE, CT_LINE]},
        REVERSED: {"parts": [SUN_LINE | {"vat_parts": taken}, CT_LINE]},
    }
    copy_events(ledger, original, copy_id, hand_written)

    events = list(ledger.events.get(copy_id))
    allocated = next(e for e in events if isinstance(e, Payment.Allocated))
    assert allocated.allocated_lines == (
        AllocatedLine("SUN", SUN_REF, 12_000, 2000, 2_000),
        AllocatedLine("CT", CT_REF, 6_000, 0, 0),
    )
    reversed_ = next(e for e in events if isinstance(e, Payment.Reversed))
    assert reversed_.reversed_parts[0] == ReversedPart(
        "SUN", SUN_REF, 12_000, 2_000, (VatPart(2000, 12_000, 2_000),)
    )
    assert all(sum(p.amount_pence for p in postings_for(e)) == 0 for e in events)
    payment = ledger.repository.get(copy_id)
    payment.check_invariant()
    assert (payment.reversed_pence, payment.remaining_pence) == (20_000, 0)


# ---- a card payment settled by a payout ----------------------------------------------------

SETTLED = get_topic(Payment.Settled)


def settled_card_payment(ledger: IncomeLedger) -> uuid.UUID:
    """A GOV.UK Pay payment of £100.00 (fee 20p) captured yesterday, paid in by today's
    statement net of its fee."""
    send(ledger, pay("card_payment_captured", "pay-1", fee=20))
    statement = camt(entry("99.80", ref="PAYOUT1"))
    outcome = import_file(ledger, statement, CommandContext("officer:importer"), file_name="s.xml")
    (line,) = get_import(ledger, outcome.batch_id)["lines"]
    return uuid.UUID(line["matched_payment_ids"][0])


def test_a_settled_event_stores_its_items_as_earlier_releases_did(ledger) -> None:
    states = dict(stored_states(ledger, settled_card_payment(ledger)))
    day = YESTERDAY.isoformat()
    assert states[SETTLED]["items"] == [
        {"kind": "card_fee", "day": day, "amount_pence": -20},
        {"kind": "payment", "day": day, "amount_pence": 10_000},
    ]
    assert all(list(item) == ["kind", "day", "amount_pence"] for item in states[SETTLED]["items"])


def test_a_settled_event_stored_as_plain_dicts_loads_as_settled_items(ledger) -> None:
    original = settled_card_payment(ledger)
    copy_id = uuid.uuid4()
    day = YESTERDAY.isoformat()
    items = [
        {"kind": "card_fee", "day": day, "amount_pence": -20},
        {"kind": "payment", "day": day, "amount_pence": 10_000},
    ]
    copy_events(ledger, original, copy_id, {SETTLED: {"items": items}})

    events = list(ledger.events.get(copy_id))
    settled = next(e for e in events if isinstance(e, Payment.Settled))
    assert settled.settled_items == (
        SettledItem("card_fee", day, -20),
        SettledItem("payment", day, 10_000),
    )
    assert {p.account: p.amount_pence for p in postings_for(settled)} == {
        "bank": 9_980,
        "clearing:govuk_pay": -9_980,
    }
    assert ledger.repository.get(copy_id).clearing == {}


# ---- an approved cash-up -------------------------------------------------------------------

CASHUP_SUBMITTED = get_topic(CashUp.Submitted)
CASHUP_APPROVED = get_topic(CashUp.Approved)
# What a cash-up stores of each counted channel since cash-ups began, keys in this order.
CASH_LINE = {
    "channel": "cash",
    "counted_pence": 2_000,
    "recorded_pence": 2_500,
    "difference_pence": -500,
}
CHEQUE_LINE = {
    "channel": "cheque",
    "counted_pence": 0,
    "recorded_pence": 0,
    "difference_pence": 0,
}


def approved_cashup(ledger: IncomeLedger) -> uuid.UUID:
    """A till that took £25.00 cash yesterday, counted £20.00 (short by £5.00), approved."""
    officer, supervisor = CommandContext("officer:olu"), CommandContext("supervisor:sue")
    add_office(ledger, "civic", "Civic Centre", ["cash", "cheque"], supervisor)
    add_till(ledger, "CIVIC", "t1", supervisor)
    received_at = uk_day_start(YESTERDAY) + timedelta(hours=12)
    command = RecordPayment(
        "cash", 2_500, CT_REF, received_at=received_at, office_code="CIVIC", till_code="T1"
    )
    ledger.record_payment(command, officer)
    count = SubmitCashUp("CIVIC", "T1", YESTERDAY, {2000: 1}, [], "BAG1", "a note went missing")
    submitted = submit_cashup(ledger, count, officer)
    cashup_id = uuid.UUID(submitted["cashup_id"])
    approve_cashup(ledger, cashup_id, supervisor)
    return cashup_id


def test_cashup_events_store_their_lines_as_earlier_releases_did(ledger) -> None:
    states = dict(stored_states(ledger, approved_cashup(ledger)))
    for topic in (CASHUP_SUBMITTED, CASHUP_APPROVED):
        assert states[topic]["lines"] == [CASH_LINE, CHEQUE_LINE]
        assert [list(line) for line in states[topic]["lines"]] == [list(CASH_LINE)] * 2


def test_cashup_events_stored_as_plain_dicts_load_as_channel_results(ledger) -> None:
    original = approved_cashup(ledger)
    copy_id = uuid.uuid4()
    lines = {"lines": [CASH_LINE, CHEQUE_LINE]}
    copy_events(ledger, original, copy_id, {CASHUP_SUBMITTED: lines, CASHUP_APPROVED: lines})

    events = list(ledger.events.get(copy_id))
    approved = next(e for e in events if isinstance(e, CashUp.Approved))
    assert approved.channel_results == (
        ChannelResult("cash", 2_000, 2_500),
        ChannelResult("cheque", 0, 0),
    )
    assert {p.account: p.amount_pence for p in postings_for(approved)} == {
        "cash:cash": -500,
        "over_short:cash": 500,
    }
    cashup = ledger.repository.get(copy_id)
    assert cashup.view()["lines"] == [CASH_LINE, CHEQUE_LINE]


# ---- an imported file ----------------------------------------------------------------------

IMPORTED = get_topic(ImportBatch.Imported)
# The keys an import stores of a money line, in this order: every line's; then
# `import_rule` (not on a statement's link; release 0.1.0 wrote it on no line), a
# statement line's `booking_date`, a link's keys, and last the `fund_code` of a receipt the
# import allocated (lines stored before it was kept have none: ImportedLine reads None).
LINE_KEYS = [
    "line",
    "kind",
    "outcome",
    "payment_id",
    "channel",
    "payment_type",
    "reference",
    "amount_pence",
    "status",
]
RECEIPT_KEYS = [*LINE_KEYS, "import_rule"]
LINK_KEYS = [*LINE_KEYS, "booking_date", "rule", "matched_payment_ids", "matched"]
# A line of a CSV file as release 0.1.0 stored it (tests/ops/fixtures), before import rules.
RELEASE_0_1_0_LINE = {
    "line": 2,
    "kind": "receipt",
    "outcome": "recorded",
    "payment_id": "acde14ba-93d9-5791-a97c-7edd8f5687c9",
    "channel": "cash",
    "payment_type": None,
    "reference": "12345679",
    "amount_pence": 2000,
    "status": "allocated",
}


def imported_lines(ledger: IncomeLedger, batch_id: uuid.UUID) -> list[dict[str, Any]]:
    return dict(stored_states(ledger, batch_id))[IMPORTED]["lines"]


def test_an_import_stores_its_lines_as_earlier_releases_did(ledger) -> None:
    importer = CommandContext("officer:importer")
    allpay = import_file(
        ledger, allpay_file(allpay_line(CT_REF, "3.00")), importer, file_name="a.txt"
    )
    (line,) = imported_lines(ledger, allpay.batch_id)
    assert list(line) == [*RECEIPT_KEYS, "fund_code"]
    assert (line["kind"], line["outcome"], line["import_rule"]) == ("receipt", "recorded", None)
    assert line["fund_code"] == "CT"

    paid = govuk_pay(ledger, 2_500, YESTERDAY, "pay-1", "card")
    statement = camt(entry("25.00", ref="B1"), entry("7.00", ref="B2"))
    outcome = import_file(ledger, statement, importer, file_name="s.xml")
    linked, new = imported_lines(ledger, outcome.batch_id)
    assert list(linked) == LINK_KEYS
    assert linked | {"line": 0} == {
        "line": 0,
        "kind": "receipt",
        "outcome": "reconciled",
        "payment_id": None,
        "channel": linked["channel"],
        "payment_type": None,
        "reference": linked["reference"],
        "amount_pence": 2_500,
        "status": None,
        "booking_date": TODAY.isoformat(),
        "rule": "one_receipt",
        "matched_payment_ids": [paid],
        "matched": f"card receipt of {YESTERDAY}",
    }
    assert list(new) == [*RECEIPT_KEYS, "booking_date"]


def test_import_lines_stored_as_plain_dicts_load_as_imported_lines(ledger) -> None:
    """Release 0.1.0's line (no import_rule) and a card payout's link (its settled_day)."""
    importer = CommandContext("officer:importer")
    day_file = allpay_file(allpay_line(CT_REF, "20.00"))
    original = import_file(ledger, day_file, importer, file_name="a.txt").batch_id
    copy_id = uuid.uuid4()
    payout = RELEASE_0_1_0_LINE | {
        "line": 3,
        "kind": "receipt",
        "outcome": "reconciled",
        "payment_id": None,
        "payment_type": None,
        "status": None,
        "booking_date": "2026-11-30",
        "rule": "card_payout",
        "matched_payment_ids": ["p1", "p2"],
        "matched": "the govuk_pay payout of 2026-11-29",
        "settled_day": "2026-11-29",
    }
    copy_events(ledger, original, copy_id, {IMPORTED: {"lines": [RELEASE_0_1_0_LINE, payout]}})

    batch = ledger.repository.get(copy_id)
    assert batch.lines == (
        ImportedLine(
            2,
            "receipt",
            "recorded",
            RELEASE_0_1_0_LINE["payment_id"],
            "cash",
            None,
            "12345679",
            2000,
            "allocated",
        ),
        ImportedLine(
            3,
            "receipt",
            "reconciled",
            None,
            "cash",
            None,
            "12345679",
            2000,
            None,
            booking_date="2026-11-30",
            link=StatementLink(
                "card_payout",
                ("p1", "p2"),
                "the govuk_pay payout of 2026-11-29",
                settled_day="2026-11-29",
            ),
        ),
    )
    assert (batch.totals.receipts_count, batch.totals.receipts_pence) == (1, 2000)
    assert batch.receipt_ids == [RELEASE_0_1_0_LINE["payment_id"]]
    # Written again, the link is as stored; the 0.1.0 line gains its import_rule, None.
    assert [line.to_dict() for line in batch.lines] == [
        RELEASE_0_1_0_LINE | {"import_rule": None},
        payout,
    ]
    assert list(batch.lines[1].to_dict()) == list(payout)


def test_the_lean_insert_stores_an_originator_id_as_the_orm_does(ledger) -> None:
    """The recorder's own insert gives SQLite a UUID's 16 bytes directly (#9): the row holds
    what eventsourcing-sqlalchemy's ORM insert stores for the same id, a UUID or its text."""
    recorder = ledger.recorder
    topic = get_topic(Payment.Noted)
    ids = [uuid.uuid4(), uuid.uuid4()]
    given = [ids[0], str(ids[1])]
    with ledger._transaction() as session:
        SQLAlchemyApplicationRecorder._insert_stored_events(
            recorder, session, [StoredEvent(i, 1, topic, b"{}") for i in given]
        )
    recorder.insert_events([StoredEvent(i, 2, topic, b"{}") for i in given])
    with ledger._transaction(commit=False) as session:
        rows = session.execute(
            text(
                f"SELECT originator_id, originator_version FROM {recorder.events_table_name} "
                "WHERE topic = :topic ORDER BY id"
            ),
            {"topic": topic},
        ).all()
    column = [(bytes(value) if isinstance(value, memoryview) else value) for value, _ in rows]
    # ORM rows first (version 1), then the lean insert's (version 2), id for id.
    assert [version for _, version in rows] == [1, 1, 2, 2]
    assert column[:2] == column[2:]
    for originator_id in ids:
        assert [e.originator_version for e in recorder.select_events(originator_id)] == [1, 2]
