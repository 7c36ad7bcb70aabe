"""Fund-group limits and the partial-refund role, through the application on both backends.

The sample chart puts CT and NNDR in REVENUES, HRA and BOP in HOUSING, PCN in PARKING and SUN
and TRW in SUNDRY.
"""

from __future__ import annotations

from uuid import UUID

import pytest

from application.access import FundAccess
from application.ledger import CommandContext, IncomeLedger, RecordPayment
from domain.errors import OutsideFundGroups, PartialRefundNotPermitted
from tests.domain.helpers import CT_REF, HRA_REF

HOUSING = CommandContext("officer:housing", access=FundAccess(frozenset({"HOUSING"})))
REVENUES = CommandContext("officer:revenues", access=FundAccess(frozenset({"REVENUES"})))
ANYONE = CommandContext("officer:anyone")


def _receipt(ledger: IncomeLedger, reference: str, ctx: CommandContext = ANYONE) -> UUID:
    return ledger.record_payment(RecordPayment("cheque", 10_000, reference), ctx).payment_id


def test_a_limited_user_sees_only_their_groups_funds(ledger: IncomeLedger) -> None:
    assert [f["code"] for f in ledger.funds(HOUSING.access)] == ["BOP", "HRA"]
    assert len(ledger.funds()) == 7
    assert ledger.fund("hra", HOUSING.access)["group"] == "HOUSING"
    with pytest.raises(OutsideFundGroups, match="limited to fund groups HOUSING; fund CT"):
        ledger.fund("CT", HOUSING.access)


def test_recording_money_for_another_groups_fund_is_refused_and_nothing_is_stored(
    ledger: IncomeLedger,
) -> None:
    before = ledger.max_position()
    with pytest.raises(OutsideFundGroups):
        _receipt(ledger, CT_REF, HOUSING)
    assert ledger.max_position() == before
    # Money that matches no fund goes to suspense, which every officer handles.
    assert ledger.record_payment(RecordPayment("cheque", 500, "JUNK"), HOUSING).recorded


def test_payments_of_another_group_cannot_be_seen_or_changed(ledger: IncomeLedger) -> None:
    council_tax = _receipt(ledger, CT_REF)
    with pytest.raises(OutsideFundGroups):
        ledger.get_payment(council_tax, HOUSING.access)
    with pytest.raises(OutsideFundGroups):
        ledger.refund(council_tax, 10_000, HOUSING, "overpaid")
    with pytest.raises(OutsideFundGroups):
        ledger.reverse(council_tax, "returned_cheque", HOUSING, "bounced")
    assert ledger.get_payment(council_tax, REVENUES.access)["refunded_pence"] == 0
    assert ledger.refund(council_tax, 10_000, REVENUES, "overpaid").recorded


def test_suspense_may_be_allocated_only_into_the_users_groups(ledger: IncomeLedger) -> None:
    held = _receipt(ledger, "JUNK")
    with pytest.raises(OutsideFundGroups, match="fund CT"):
        ledger.allocate(held, [("CT", CT_REF, 10_000)], HOUSING, "advice came")
    assert ledger.get_payment(held)["unallocated_pence"] == 10_000
    ledger.allocate(held, [("HRA", HRA_REF, 10_000)], HOUSING, "tenant rang")
    # Moving the money on to another group's fund would leave it outside the user's reach.
    with pytest.raises(OutsideFundGroups):
        ledger.transfer(held, ("HRA", HRA_REF), ("CT", CT_REF), 5_000, HOUSING, "wrong fund")
    assert ledger.transfer(held, ("HRA", HRA_REF), ("CT", CT_REF), 5_000, ANYONE, "moved").recorded
    # Now part of it is in CT: the housing officer may no longer touch the payment.
    with pytest.raises(OutsideFundGroups):
        ledger.note(held, "called the tenant", HOUSING)


def test_a_role_without_partial_refunds_may_refund_all_of_an_allocation_only(
    ledger: IncomeLedger,
) -> None:
    whole_only = CommandContext("officer:cashier", partial_refunds=False)
    pid = _receipt(ledger, CT_REF)
    with pytest.raises(PartialRefundNotPermitted, match="£100.00"):
        ledger.refund(pid, 2_500, whole_only, "part")
    assert ledger.get_payment(pid)["refunded_pence"] == 0
    assert ledger.refund(pid, 2_500, ANYONE, "part").recorded
    assert ledger.refund(pid, 7_500, whole_only, "the rest").payment["refunded_pence"] == 10_000
