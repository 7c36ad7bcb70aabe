"""Payment events carry typed values (AllocatedLine, ReversedPart) but keep the JSON shape
every stored event already has, so databases written by earlier releases still load (#13)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from application.ledger import IncomeLedger, RecordPayment
from domain.allocation_lines import AllocatedLine, ReversedPart, VatPart
from domain.payment import Payment
from domain.postings import postings_for
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
    copies = []
    for version, (topic, state) in enumerate(stored_states(ledger, original), start=1):
        state.update(hand_written.get(topic, {}))
        copies.append(StoredEvent(copy_id, version, topic, json.dumps(state).encode()))
    ledger.recorder.insert_events(copies)

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
