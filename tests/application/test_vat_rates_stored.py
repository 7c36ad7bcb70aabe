"""A fund's VAT rate change, through storage on both backends, reaches existing lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from application.ledger import IncomeLedger, RecordPayment
from income_ledger.bootstrap import build_ledger
from tests.domain.helpers import SUN_REF


def test_a_new_allocation_to_an_existing_line_takes_the_new_rate(ledger, officer) -> None:
    received = datetime.now(UTC) - timedelta(days=2)
    command = RecordPayment("cheque", 24_000, "JUNK", received_at=received)
    pid = ledger.record_payment(command, officer).payment_id
    ledger.allocate(pid, [("SUN", SUN_REF, 12_000)], officer, "invoice", received)
    ledger.amend_fund("SUN", {"vat_rate_basis_points": 0}, officer, "zero-rated")
    ledger.allocate(pid, [("SUN", SUN_REF, 6_000)], officer, "second invoice")
    [line] = ledger.get_payment(pid)["allocations"]
    assert line["amount_pence"] == 18_000 and line["vat_pence"] == 2_000


def test_a_dated_rate_change_is_stored_and_read_back(ledger: IncomeLedger, settings, officer):
    start = datetime(2027, 4, 1, tzinfo=UTC)
    ledger.amend_fund("SUN", {"vat_rate_basis_points": 500}, officer, "from April", start)
    other = build_ledger(settings)
    try:
        sun = other.fund("SUN")
    finally:
        other.close()
    assert sun["vat_rate_basis_points"] == 2000  # the rate in force now, not from April
    assert sun["vat_rates"] == [
        {"effective_from": None, "vat_rate_basis_points": 2000},
        {"effective_from": start.isoformat(), "vat_rate_basis_points": 500},
    ]
    command = RecordPayment("cash", 12_000, SUN_REF)  # received now: before April 2027
    payment = ledger.record_payment(command, officer).payment
    assert payment["allocations"][0]["vat_pence"] == 2_000
