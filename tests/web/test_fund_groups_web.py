"""A key limited to fund groups in the officers' pages, over plain HTTP on both backends: the
same limits as the API, since the pages call the same application services."""

from __future__ import annotations

from application.ledger import CommandContext, RecordPayment
from tests.web.conftest import CT_REFERENCE
from tests.web.test_pages_http import signed_in, wait_for_page


def test_a_housing_officer_neither_finds_nor_opens_council_tax_payments(
    web_url, in_suspense, ledger
) -> None:
    council_tax = ledger.record_payment(
        RecordPayment(channel="cash", amount_pence=4_200, reference=CT_REFERENCE),
        CommandContext("officer:anyone"),
    ).payment_id
    everyone = signed_in(web_url, "officer")
    wait_for_page(everyone, f"/web/payments?reference={CT_REFERENCE}", "1 payment found")
    housing = signed_in(web_url, "housing")
    found = housing.get("/web/payments", params={"reference": CT_REFERENCE})
    assert "0 payments found" in found.text
    refused = housing.get(f"/web/payments/{council_tax}")
    assert refused.status_code == 403
    assert "limited to fund groups HOUSING" in refused.text
    # Suspense is everyone's: the housing officer opens it, and may allocate it to rents only.
    assert housing.get(f"/web/payments/{in_suspense}").status_code == 200
    allocate = housing.get(f"/web/payments/{in_suspense}/allocate")
    assert 'value="HRA"' in allocate.text and 'value="CT"' not in allocate.text
