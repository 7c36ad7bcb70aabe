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


def test_the_menu_offers_a_housing_officer_no_page_that_covers_every_fund(web_url) -> None:
    """Imports and the reconciliation report cover every fund and refuse a key limited to
    fund groups: the menu and the dashboard do not offer them to such a key (they did, and
    each link answered 403); a key without limits still finds both."""
    housing = signed_in(web_url, "housing")
    dashboard = housing.get("/web/")
    assert dashboard.status_code == 200
    assert "/web/imports" not in dashboard.text
    assert "/web/reconciliation/exceptions" not in dashboard.text
    assert housing.get("/web/reconciliation/exceptions").status_code == 403
    everyone = signed_in(web_url, "officer").get("/web/").text
    assert "/web/imports" in everyone and "/web/reconciliation/exceptions" in everyone
