"""The cash-up pages, on both backends: in chromium, an officer submits a till's count and a
supervisor approves it; over plain HTTP (no JavaScript), the form keeps what was typed, shows
the ledger's errors beside their fields, and a double submit records once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from application.cashups import cashups
from application.ledger import CommandContext, RecordPayment
from application.offices import add_office, add_till
from domain.periods import uk_date
from tests.web.test_browser import check_page, sign_in, sign_out
from tests.web.test_pages_http import hidden, signed_in

SUPERVISOR = CommandContext("supervisor:setup")
YESTERDAY = uk_date(datetime.now(UTC)) - timedelta(days=1)


@pytest.fixture
def till_day(ledger) -> None:
    """Office CIVIC's till T1 took £35.50 in cash and a £12.00 cheque yesterday."""
    add_office(ledger, "CIVIC", "Civic Centre", ["cash", "cheque", "card"], SUPERVISOR)
    add_till(ledger, "CIVIC", "T1", SUPERVISOR, name="Front desk")
    noon = datetime(YESTERDAY.year, YESTERDAY.month, YESTERDAY.day, 12, tzinfo=UTC)
    for channel, pence in (("cash", 3550), ("cheque", 1200)):
        ledger.record_payment(
            RecordPayment(
                channel, pence, "12345679", received_at=noon, office_code="CIVIC", till_code="T1"
            ),
            CommandContext("officer:officer"),
        )


def test_an_officer_submits_a_cash_up_and_another_user_approves_it(
    browser_page, web_url, till_day, ledger, database_url
) -> None:
    page = browser_page
    sign_in(page, web_url, "officer")
    page.get_by_role("link", name="Cash-up", exact=True).click()
    page.get_by_label("Office and till").select_option("CIVIC/T1")
    page.get_by_label("Date counted").fill(YESTERDAY.isoformat())
    for label, how_many in (("£20 notes", "1"), ("£10 notes", "1"), ("£2 coins", "2")):
        page.get_by_label(label, exact=True).fill(how_many)
    page.get_by_label("50p coins", exact=True).fill("1")  # £34.50 for £35.50 recorded
    page.get_by_label("Cheque 1 amount, in pounds").fill("12.00")
    page.get_by_label("Cheque 1 drawer").fill("A Payer")
    page.get_by_label("Bag number").fill("BAG-42")
    check_page(page, "cashup", database_url)
    page.get_by_role("button", name="Submit the cash-up").click()
    error = page.locator("#reason-error")
    error.wait_for()
    assert "cash short by £1.00" in error.inner_text()
    assert page.get_by_label("Bag number").input_value() == "BAG-42"  # kept
    page.get_by_label("Reason for any difference").fill("£1 coin given as change twice")
    page.get_by_role("button", name="Submit the cash-up").click()
    page.get_by_text("now waits for a supervisor's approval").wait_for()
    sign_out(page)

    sign_in(page, web_url, "supervisor")
    page.get_by_role("link", name="Cash-up approvals").click()
    page.get_by_text("£1 coin given as change twice", exact=True).wait_for()
    check_page(page, "cashup-approvals", database_url)
    page.get_by_role("button", name="Approve").click()
    page.get_by_text("The cash-up was approved.").wait_for()
    [approved] = cashups(ledger, "approved")
    assert approved["submitted_by"] == "officer:officer"
    assert approved["decided_by"] == "supervisor:supervisor"
    assert [line["difference_pence"] for line in approved["lines"]] == [-100, 0]


def test_the_form_without_javascript_keeps_input_shows_errors_and_records_once(
    web_url, till_day, ledger
) -> None:
    client = signed_in(web_url, "officer")
    form = client.get("/web/cashup").text
    fields = {
        "csrf_token": hidden(form, "csrf_token"),
        "idempotency_key": hidden(form, "idempotency_key"),
        "till": "CIVIC/T1",
        "business_date": YESTERDAY.isoformat(),
        "count_2000": "one",
        "count_1000": "1",
        "cheque_amount_1": "12.00",
        "cheque_drawer_1": "A Payer",
        "bag_number": "B-1",
    }
    refused = client.post("/web/cashup", data=fields)
    assert refused.status_code == 422
    assert 'id="count_2000-error"' in refused.text and 'value="B-1"' in refused.text
    fixed = fields | {"count_2000": "1", "count_500": "1", "count_50": "1"}
    sent = client.post("/web/cashup", data=fixed)
    assert sent.status_code == 303 and "done=submitted" in sent.headers["location"]
    again = client.post("/web/cashup", data=fixed)  # a double submit
    assert again.status_code == 303 and again.headers["location"] == sent.headers["location"]
    assert len(cashups(ledger)) == 1
    forbidden = client.get("/web/cashups")
    assert forbidden.status_code == 403  # officers do not approve
    tampered = client.post("/web/cashup", data=fixed | {"csrf_token": "x"})
    assert tampered.status_code == 403


def test_a_day_before_the_till_was_added_is_shown_beside_the_date(
    web_url, till_day, ledger
) -> None:
    client = signed_in(web_url, "officer")
    form = client.get("/web/cashup").text
    fields = {
        "csrf_token": hidden(form, "csrf_token"),
        "idempotency_key": hidden(form, "idempotency_key"),
        "till": "CIVIC/T1",
        "business_date": "2026-03-31",
        "count_1000": "1",
        "bag_number": "B-1",
    }
    refused = client.post("/web/cashup", data=fields)
    assert refused.status_code == 422
    error = refused.text.split('id="business_date-error"', 1)[1].split("</p>", 1)[0]
    assert "is before till T1 of office CIVIC was added" in error, error
    assert cashups(ledger) == []
