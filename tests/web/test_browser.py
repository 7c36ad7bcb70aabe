"""The officers' pages in a real browser (headless Debian chromium, Playwright), on both
backends: sign-in, each page, suspense to allocation, a refund approved by another user, CSRF
refusal and role limits; each page is checked with axe-core and photographed for the README."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from application.ledger import CommandContext
from tests.web.conftest import SCREENSHOTS, SUSPENSE_REFERENCE, screenshots_wanted, token

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def sign_in(page, base: str, who: str) -> None:
    page.goto(f"{base}/web/sign-in")
    page.get_by_label("Access key").fill(token(who))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/web/")


def sign_out(page) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="You have signed out").wait_for()


def accessibility_problems(page) -> list[str]:
    """axe-core's WCAG 2.2 A/AA violations on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_TAGS
    )
    return [
        f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes: {v['nodes'][0]['target']})"
        for v in result["violations"]
    ]


def check_page(page, name: str, database_url: str) -> None:
    """No accessibility problems; with LEDGER_TEST_SCREENSHOTS=1, a screenshot for the README
    (from the SQLite run; only when asked, so that test runs leave the checkout unchanged)."""
    assert accessibility_problems(page) == [], name
    if screenshots_wanted() and database_url.startswith("sqlite"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def reload_until(page, condition, timeout_s: float = 10) -> None:
    """The read model follows in a thread: reload a page until it shows what was recorded."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the page never showed it"
        time.sleep(0.1)
        page.reload()


def test_sign_in_each_page_and_sign_out(
    browser_page, web_url, in_suspense, allocated, database_url
) -> None:
    page = browser_page
    page.goto(f"{web_url}/")
    page.wait_for_url(f"{web_url}/web/sign-in")
    check_page(page, "sign-in", database_url)
    page.get_by_label("Access key").fill("not-a-key-of-anyone")
    page.get_by_role("button", name="Sign in").click()
    assert "not recognised" in page.locator("#access_key-error").inner_text()
    assert page.get_by_label("Access key").input_value() == ""  # a key is never sent back

    sign_in(page, web_url, "officer")
    assert token("officer") not in page.content()
    # The served GOV.UK Frontend script ran (progressive enhancement on top of the HTML).
    page.wait_for_function("document.body.classList.contains('govuk-frontend-supported')")
    reload_until(page, lambda: "£250.00" in page.content())
    check_page(page, "dashboard", database_url)

    page.get_by_role("link", name="Suspense", exact=True).click()
    page.get_by_role("heading", name="Suspense queue").wait_for()
    reload_until(page, lambda: SUSPENSE_REFERENCE in page.content())
    check_page(page, "suspense", database_url)

    page.get_by_role("link", name="Payments", exact=True).click()
    page.get_by_label("Payer's reference").fill("12345679")
    page.get_by_role("button", name="Search").click()
    page.get_by_text("1 payment found").wait_for()
    check_page(page, "payments", database_url)

    page.get_by_role("link", name="Suspense", exact=True).click()
    page.get_by_role("link", name="View payment of £80.00").click()
    page.get_by_role("heading", name="£80.00 by cheque").wait_for()
    check_page(page, "payment", database_url)
    sign_out(page)
    page.goto(f"{web_url}/web/suspense")
    page.wait_for_url(f"{web_url}/web/sign-in")


def test_suspense_to_allocation(browser_page, web_url, in_suspense, ledger, database_url) -> None:
    page = browser_page
    sign_in(page, web_url, "officer")
    page.goto(f"{web_url}/web/suspense")
    reload_until(page, lambda: SUSPENSE_REFERENCE in page.content())
    page.get_by_role("link", name="Allocate £80.00").click()
    page.get_by_label("Fund (line 1)", exact=True).select_option("CT")
    page.get_by_label("Payer's reference in that fund (line 1)").fill(SUSPENSE_REFERENCE)
    page.get_by_label("Amount in pounds (line 1)").fill("80.00")
    page.get_by_role("button", name="Allocate").click()

    # The ledger's own rule, shown beside the field, with what was typed kept.
    error = page.locator("#reference_1-error")
    assert "check digit" in error.inner_text()
    assert page.get_by_label("Amount in pounds (line 1)").input_value() == "80.00"
    assert page.get_by_label("Fund (line 1)", exact=True).input_value() == "CT"
    check_page(page, "allocate-error", database_url)
    assert ledger.get_payment(in_suspense)["unallocated_pence"] == 8000

    page.get_by_label("Payer's reference in that fund (line 1)").fill("12345679")
    page.get_by_role("button", name="Allocate").click()
    page.get_by_text("The money was allocated.").wait_for()
    payment = ledger.get_payment(in_suspense)
    assert payment["unallocated_pence"] == 0
    assert payment["allocations"][0]["reference"] == "12345679"
    assert payment["history"][-1]["actor"] == "officer:officer"
    page.goto(f"{web_url}/web/suspense")
    reload_until(page, lambda: "Nothing in suspense." in page.content())


def test_a_refund_requested_by_one_user_is_approved_by_another(
    browser_page, web_url, allocated, ledger, database_url
) -> None:
    page = browser_page
    sign_in(page, web_url, "supervisor")
    page.goto(f"{web_url}/web/payments/{allocated}")
    page.get_by_label("Amount to refund, in pounds").fill("150.00")  # above the £100 limit
    page.get_by_label("Reason").fill("paid twice")
    page.get_by_role("button", name="Refund").click()
    page.get_by_text("now waits for a supervisor's approval").wait_for()
    page.get_by_role("link", name="Refund approvals").click()
    assert page.get_by_text("Your own request: another supervisor").is_visible()
    assert page.get_by_role("button", name="Approve").count() == 0
    sign_out(page)

    sign_in(page, web_url, "supervisor2")
    page.get_by_role("link", name="Refund approvals").click()
    check_page(page, "refund-approvals", database_url)
    page.get_by_role("button", name="Approve").click()
    page.get_by_text("The refund was approved and paid.").wait_for()
    payment = ledger.get_payment(allocated)
    assert payment["refunded_pence"] == 15000
    assert payment["pending_refunds"] == []
    assert payment["history"][-1]["actor"] == "supervisor:supervisor2"


def test_a_form_posted_without_its_csrf_token_is_refused(
    browser_page, web_url, in_suspense, ledger
) -> None:
    page = browser_page
    sign_in(page, web_url, "officer")
    answer = page.request.post(
        f"{web_url}/web/payments/{in_suspense}/allocate",
        form={"fund_code_1": "CT", "reference_1": "12345679", "amount_1": "80.00", "reason": "x"},
        max_redirects=0,
    )
    assert answer.status == 403
    assert "not sent from this site" in answer.text()
    assert ledger.get_payment(in_suspense)["unallocated_pence"] == 8000


@pytest.mark.parametrize("who", ["auditor", "officer"])
def test_pages_a_role_may_not_use_are_refused_and_not_linked(
    browser_page, web_url, in_suspense, who, database_url
) -> None:
    page = browser_page
    sign_in(page, web_url, who)
    assert page.get_by_role("link", name="Refund approvals").count() == 0
    page.goto(f"{web_url}/web/refunds")
    assert page.get_by_role("heading", name="You cannot use this page").is_visible()
    if who == "auditor":
        page.goto(f"{web_url}/web/suspense")
        reload_until(page, lambda: SUSPENSE_REFERENCE in page.content())
        assert page.get_by_role("link", name="Allocate £80.00").count() == 0
        page.goto(f"{web_url}/web/payments/{in_suspense}")
        assert page.get_by_role("button", name="Refund").count() == 0
        response = page.goto(f"{web_url}/web/payments/{in_suspense}/allocate")
        assert response.status == 403
        check_page(page, "refused", database_url)


def test_a_double_submit_records_once(browser_page, web_url, allocated, ledger) -> None:
    page = browser_page
    sign_in(page, web_url, "officer")
    page.goto(f"{web_url}/web/payments/{allocated}")
    page.get_by_label("Amount to refund, in pounds").fill("5.00")
    page.get_by_label("Reason").fill("overpaid")
    form = page.locator("form[action$='/refund']")
    # Two submits of one form, as a double click without JavaScript would send.
    fields = {
        name: form.locator(f"[name={name}]").input_value()
        for name in ("csrf_token", "idempotency_key", "amount", "reason")
    }
    for _ in range(2):
        answer = page.request.post(
            f"{web_url}/web/payments/{allocated}/refund", form=fields, max_redirects=0
        )
        assert answer.status == 303
    assert ledger.get_payment(allocated)["refunded_pence"] == 500
    _ = CommandContext  # the ledger fixture records as the test's actors


def test_suspense_to_allocation_with_javascript_off(chromium, web_url, in_suspense, ledger):
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_in(page, web_url, "officer")
        page.goto(f"{web_url}/web/payments/{in_suspense}/allocate")
        page.get_by_label("Fund (line 1)", exact=True).select_option("CT")
        page.get_by_label("Payer's reference in that fund (line 1)").fill("12345679")
        page.get_by_label("Amount in pounds (line 1)").fill("80.00")
        page.get_by_role("button", name="Allocate").click()
        page.get_by_text("The money was allocated.").wait_for()
        assert "js-enabled" not in page.locator("body").get_attribute("class")
    finally:
        context.close()
    assert ledger.get_payment(in_suspense)["unallocated_pence"] == 0
