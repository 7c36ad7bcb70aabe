"""A read-only check lists the statement lines a fund took by their reference whose
narrative names a payment provider by the ledger's names now (a payout taken into a fund
before the provider rule, or before a name was added to LEDGER_COLLECTOR_NARRATIVES): with
where their money is now, so an officer can transfer them; nothing is changed. SQLite and
PostgreSQL."""

from __future__ import annotations

from uuid import UUID

from application.imports import get_import, import_file, reverse_import
from application.reconciliation import provider_lines_in_funds
from domain.statements import COLLECTOR_NARRATIVES, PAYOUT_NARRATIVES, ProviderNames
from tests.application.test_late_statement_links import OFFICER, SUPERVISOR
from tests.application.test_statement_imports import YESTERDAY, camt, entry
from tests.domain.helpers import CT_REF, CT_REF_2


def test_lines_a_fund_took_that_name_a_provider_now_are_listed(ledger) -> None:
    statement = camt(
        entry("10.00", day=YESTERDAY, ref="B1", text=CT_REF, info="WORLDPAY LTD 1234"),
        entry("11.00", day=YESTERDAY, ref="B2", text=CT_REF_2, info="J SMITH"),
        entry("12.00", day=YESTERDAY, ref="B3", text=CT_REF, info="WORLDPAYLTD 99"),
        entry("13.00", day=YESTERDAY, ref="B4", text=CT_REF_2, info="WORLDPAY 77"),
    )
    batch_id = import_file(ledger, statement, OFFICER, file_name="day.xml").batch_id
    view = get_import(ledger, batch_id)["lines"]
    assert [line["status"] for line in view] == ["allocated"] * 4
    assert provider_lines_in_funds(ledger) == {"total": 0, "lines": []}

    # The council adds Worldpay to its collectors (LEDGER_COLLECTOR_NARRATIVES).
    ledger.provider_narratives = ProviderNames.of(
        PAYOUT_NARRATIVES, (*COLLECTOR_NARRATIVES, "WORLDPAY")
    )
    position = ledger.max_position()
    found = provider_lines_in_funds(ledger)
    assert ledger.max_position() == position, "read-only"
    assert found["total"] == 3
    assert [(row["line"], row["amount_pence"]) for row in found["lines"]] == [
        (1, 1_000),
        (3, 1_200),
        (4, 1_300),
    ]
    first = found["lines"][0]
    assert first["batch_id"] == str(batch_id) and first["file_name"] == "day.xml"
    assert first["narrative"] == "WORLDPAY LTD 1234" and first["booking_date"]
    assert first["funds"] == [{"fund_code": "CT", "reference": CT_REF, "amount_pence": 1_000}]
    assert provider_lines_in_funds(ledger, most=1)["lines"] == found["lines"][:1]

    # Refunded in full: done with. Transferred: listed where the money is now.
    ledger.refund(UUID(view[2]["payment_id"]), 1_200, OFFICER, "Worldpay's", source=("CT", CT_REF))
    ledger.transfer(
        UUID(view[3]["payment_id"]), ("CT", CT_REF_2), ("CT", CT_REF), 300, OFFICER, "part"
    )
    found = provider_lines_in_funds(ledger)
    assert [row["line"] for row in found["lines"]] == [1, 4]
    assert found["lines"][1]["funds"] == [
        {"fund_code": "CT", "reference": CT_REF_2, "amount_pence": 1_000},
        {"fund_code": "CT", "reference": CT_REF, "amount_pence": 300},
    ]

    reverse_import(ledger, batch_id, SUPERVISOR, "the wrong day's statement")
    assert provider_lines_in_funds(ledger) == {"total": 0, "lines": []}


def test_only_the_receipts_of_lines_naming_a_provider_are_read(ledger, monkeypatch) -> None:
    """The lines come from the books the process keeps (the events since its last call),
    not from every import read again, and only the receipts of the lines whose narrative
    names a provider are read: not every payer's transfer ever taken by its reference."""
    statement = camt(
        entry("10.00", day=YESTERDAY, ref="B1", text=CT_REF, info="WORLDPAY LTD 1234"),
        entry("11.00", day=YESTERDAY, ref="B2", text=CT_REF_2, info="J SMITH"),
        entry("12.00", day=YESTERDAY, ref="B3", text=CT_REF, info="A JONES"),
    )
    batch_id = import_file(ledger, statement, OFFICER, file_name="day.xml").batch_id
    view = get_import(ledger, batch_id)["lines"]
    ledger.provider_narratives = ProviderNames.of(
        PAYOUT_NARRATIVES, (*COLLECTOR_NARRATIVES, "WORLDPAY")
    )
    read: list[UUID] = []
    payments_events = ledger.payments_events

    def reading(ids):
        read.extend(ids)
        return payments_events(ids)

    def every_import(*_, **__):
        raise AssertionError("every import read again")

    monkeypatch.setattr(ledger, "payments_events", reading)
    monkeypatch.setattr(ledger, "events_of", every_import)
    found = provider_lines_in_funds(ledger)
    assert [row["line"] for row in found["lines"]] == [1]
    assert read == [UUID(view[0]["payment_id"])]
