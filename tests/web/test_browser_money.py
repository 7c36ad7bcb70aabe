"""The account statement, transfer and reversal forms, the auditor's pages and the import
upload in a real browser (headless Debian chromium, Playwright), on both backends: each page
checked with axe-core and photographed for the README; role limits, CSRF refusal and a
double submit recorded once."""

from __future__ import annotations

from datetime import timedelta

from application.imports import get_import, import_file
from application.ledger import CommandContext
from domain.limits import uk_today
from tests.application.test_statement_imports import camt, entry
from tests.web.conftest import CT_REFERENCE, SCREENSHOTS, screenshots_wanted
from tests.web.test_browser import (
    accessibility_problems,
    check_page,
    reload_until,
    sign_in,
    sign_out,
)


def test_a_statement_a_transfer_and_a_reversal(
    browser_page, web_url, allocated, in_suspense, ledger, database_url
) -> None:
    page = browser_page
    sign_in(page, web_url, "officer")
    page.goto(f"{web_url}/web/payments/{allocated}")
    page.get_by_role("link", name="Move money to another account").click()
    page.get_by_label("To the fund").select_option("SUN")
    page.get_by_label("Payer's reference in that fund").fill("INV1234561")
    page.get_by_label("Amount in pounds").fill("50.00")
    page.get_by_label("Reason").fill("paid the wrong account")
    page.get_by_role("button", name="Move the money").click()
    assert "check digit" in page.locator("#reference-error").inner_text()
    assert page.get_by_label("Amount in pounds").input_value() == "50.00"
    check_page(page, "transfer-error", database_url)

    # The same form sent twice, as a double click without JavaScript would.
    form = page.locator("form[action$='/transfer']")
    fields = {
        name: form.locator(f"[name={name}]").input_value()
        for name in ("csrf_token", "idempotency_key", "from_account", "fund_code", "amount")
    } | {"reference": "INV1234560", "reason": "paid the wrong account"}
    path = f"{web_url}/web/payments/{allocated}/transfer"
    for _ in range(2):
        assert page.request.post(path, form=fields, max_redirects=0).status == 303
    without_token = {k: v for k, v in fields.items() if k != "csrf_token"}
    assert page.request.post(path, form=without_token, max_redirects=0).status == 403
    history = ledger.get_payment(allocated)["history"]
    assert [e["action"] for e in history].count("Transferred") == 1

    page.get_by_role("link", name="Accounts", exact=True).click()
    page.get_by_label("Fund", exact=True).select_option("CT")
    page.get_by_label("Payer's reference").fill(CT_REFERENCE)
    page.get_by_label("Effective on or after").fill((uk_today() - timedelta(days=7)).isoformat())
    page.get_by_role("button", name="Show the statement").click()
    reload_until(page, lambda: "Transferred" in page.content())
    assert page.get_by_text("balance £200.00").is_visible()
    check_page(page, "account", database_url)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download this statement (CSV)").click()
    assert download.value.suggested_filename == f"statement-CT-{CT_REFERENCE}.csv"

    page.goto(f"{web_url}/web/payments/{in_suspense}")
    page.get_by_role("link", name="Reverse").click()
    page.get_by_label("Reason").fill("cheque returned unpaid")
    page.get_by_role("button", name="Reverse £80.00").click()
    assert "Choose why" in page.locator("#kind-error").inner_text()
    check_page(page, "reverse-error", database_url)
    page.get_by_label("Returned cheque").check()
    page.get_by_role("button", name="Reverse £80.00").click()
    page.get_by_text("The payment was reversed.").wait_for()
    assert ledger.get_payment(in_suspense)["reversed_pence"] == 8000


def test_the_auditor_pages_and_who_may_open_them(
    browser_page, web_url, allocated, database_url
) -> None:
    page = browser_page
    sign_in(page, web_url, "officer")
    assert page.get_by_role("link", name="Trial balance").count() == 0
    page.goto(f"{web_url}/web/audit/trial-balance")
    assert page.get_by_role("heading", name="You cannot use this page").is_visible()
    sign_out(page)

    sign_in(page, web_url, "auditor")
    page.get_by_role("link", name="Replay", exact=True).click()
    page.get_by_label("As at").fill(uk_today().isoformat())
    page.get_by_role("button", name="Replay").click()
    page.get_by_role("cell", name="£250.00").first.wait_for()
    check_page(page, "replay", database_url)
    page.get_by_role("link", name="Trial balance", exact=True).click()
    page.get_by_label("As at").fill(uk_today().isoformat())
    page.get_by_role("button", name="Show the trial balance").click()
    page.get_by_text("The ledger balances").wait_for()
    check_page(page, "trial-balance", database_url)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download every account's balance (CSV)").click()
    assert download.value.suggested_filename.startswith("trial-balance-")


def upload(page, path, total: str, payments: str) -> None:
    """Send a file through the import form with the total and count the officer declares."""
    page.get_by_label("File to import").set_input_files(str(path))
    page.get_by_label("Total of the file, in pounds").fill(total)
    page.get_by_label("Number of payments in the file").fill(payments)
    page.get_by_role("button", name="Import", exact=True).click()


def test_an_import_refused_line_by_line_then_imported(
    browser_page, web_url, ledger, database_url, tmp_path
) -> None:
    page = browser_page
    sign_in(page, web_url, "officer")
    day = (uk_today() - timedelta(days=1)).isoformat()
    header = "channel,amount,reference,received_date,external_id,fund_code"
    bad = tmp_path / "monday.csv"
    bad.write_text(f"{header}\ncash,12.50,{CT_REFERENCE},{day},a,CT\ncash,1.005,X,{day},b,CT\n")
    good = tmp_path / "tuesday.csv"
    good.write_text(f"{header}\ncash,12.50,{CT_REFERENCE},{day},a,CT\n")

    page.get_by_role("link", name="Imports", exact=True).click()
    page.get_by_role("link", name="Import a file").click()
    upload(page, bad, "13.50", "2")
    page.get_by_text("Lines refused (1)").wait_for()
    check_page(page, "import-refused", database_url)

    upload(page, good, "12.50", "1")
    page.get_by_text("The file was imported.").wait_for()
    check_page(page, "import", database_url)
    page.get_by_role("link", name="Back to imported files").click()
    reload_until(page, lambda: "tuesday.csv" in page.content())
    check_page(page, "imports", database_url)


def test_an_officer_undoes_a_statement_link_on_the_import_page(
    browser_page, web_url, late_linked, ledger, database_url
) -> None:
    page = browser_page
    sign_in(page, web_url, "officer")
    page.goto(f"{web_url}/web/imports/{late_linked}")
    page.get_by_text("Undo link").click()
    undo = page.get_by_role("button", name="Undo the link of line 1")
    undo.click()
    assert "Enter why the link is wrong" in page.locator("#unlink_reason_1-error").inner_text()
    check_page(page, "import-unlink-error", database_url)
    page.get_by_label("Why is the link of line 1 wrong?").fill("a payer's own transfer")
    undo.click()
    page.get_by_text("The link of line 1 was undone").wait_for()
    assert page.get_by_text("Link undone").is_visible()
    check_page(page, "import-link-undone", database_url)
    assert get_import(ledger, late_linked)["lines"][0]["late_link"] is None


def test_an_officer_chooses_what_a_statement_line_pays_in(
    browser_page, web_url, two_candidates, ledger, database_url
) -> None:
    batch_id, files = two_candidates
    page = browser_page
    sign_in(page, web_url, "officer")
    page.goto(f"{web_url}/web/imports/{batch_id}")
    assert page.get_by_text("Needs a person").is_visible()
    page.get_by_text("Choose what it pays in").click()
    link = page.get_by_role("button", name="Link to the one chosen for line 1")
    link.click()
    assert "Choose the record" in page.locator("#choice_1-error").inner_text()
    check_page(page, "import-choose-error", database_url)
    page.get_by_label(f"the total of import {files[1]}", exact=False).check()
    page.get_by_label("Why that one?").fill("the remittance advice names be2")
    link.click()
    page.get_by_text("Line 1 was linked to the record chosen").wait_for()
    check_page(page, "import-chosen", database_url)
    (line,) = get_import(ledger, batch_id)["lines"]
    assert line["late_link"]["matched_batch_id"] == files[1]


def test_pages_fit_a_phone_screen_their_wide_tables_scrolling_in_place(
    chromium, web_url, allocated, in_suspense, ledger, database_url
) -> None:
    """At 390 px (a phone) no page is wider than the screen: a wide table (the dashboard's
    takings by channel and fund, the imports list, an import's lines with a bank's 70
    character reference, the exceptions report's sections) scrolls sideways in its own box,
    which takes keyboard focus."""
    reference = "TFRXBANKGO24007680SJCATJPY2GBPXBANKGO24007680BGCINTERNATIONAL-5373CLIENT"
    statement = camt(entry("0.89", ref="B1", text=reference))
    batch_id = import_file(ledger, statement, CommandContext("officer:t"), file_name="s.xml")
    context = chromium.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_in(page, web_url, "officer")
        for path in (
            "/web/",
            "/web/imports",
            f"/web/imports/{batch_id.batch_id}",
            "/web/reconciliation/exceptions",
        ):
            page.goto(f"{web_url}{path}")
            reload_until(page, lambda: "£" in page.content())
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} is {width} px wide on a 390 px screen"
            assert page.locator(".ledger-table-scroll").count() >= 1, path
            assert accessibility_problems(page) == [], path
    finally:
        context.close()


def test_the_exceptions_report_reads_on_a_phone_without_sideways_scrolling(
    chromium, web_url, in_suspense, ledger, database_url
) -> None:
    """At 390 px the exceptions report's sections show each row as label and value lines:
    neither the page nor any table's box scrolls sideways, every amount and link is on the
    screen, and the labels are the columns' names; at 1100 px the rows are table rows."""
    reference = "TFRXBANKGO24007680SJCATJPY2GBPXBANKGO24007680BGCINTERNATIONAL-5373CLIENT"
    statement = camt(entry("0.89", ref="B1", text=reference))
    import_file(ledger, statement, CommandContext("officer:t"), file_name="s.xml")
    context = chromium.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_in(page, web_url, "officer")
        page.goto(f"{web_url}/web/reconciliation/exceptions")
        reload_until(page, lambda: "£80.00" in page.content() and "£0.89" in page.content())
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        boxes = page.evaluate(
            "[...document.querySelectorAll('.ledger-table-scroll')]"
            ".map(box => [box.getAttribute('aria-label'), box.scrollWidth, box.clientWidth])"
        )
        assert len(boxes) == 3, boxes  # the summary and two sections
        scrolling = [(name, wide, shown) for name, wide, shown in boxes if wide > shown]
        assert not scrolling, f"tables that scroll sideways at 390 px: {scrolling}"
        for shown in (
            page.get_by_role("cell", name="£0.89"),
            page.get_by_role("cell", name="£80.00"),
            page.locator("a", has_text="Line 1 of its import"),
            page.locator("a", has_text="Payment"),
        ):
            box = shown.first.bounding_box()
            assert box is not None and box["x"] + box["width"] <= 390, shown
        labels = page.evaluate(
            "[...document.querySelectorAll('table.ledger-stacked tbody tr:first-child td')]"
            ".map(cell => getComputedStyle(cell, '::before').content)"
        )
        assert labels[:7] == [
            '"Date" / ""',
            '"Age" / ""',
            '"What" / ""',
            '"Channel" / ""',
            '"Reference" / ""',
            '"Amount" / ""',
            '"Settle it" / ""',
        ], labels
        assert accessibility_problems(page) == []
        if screenshots_wanted() and database_url.startswith("sqlite"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "exceptions-phone.png"), full_page=True)
        page.set_viewport_size({"width": 1100, "height": 900})
        display = page.evaluate(
            "getComputedStyle(document.querySelector('table.ledger-stacked tbody tr')).display"
        )
        assert display == "table-row"
    finally:
        context.close()


def test_the_exceptions_report_from_the_menu_to_a_lines_import(
    browser_page, web_url, in_suspense, ledger, database_url
) -> None:
    """The report opened from the menu lists a statement line and a receipt, passes axe,
    downloads its CSV, and leads to the line's import."""
    statement = camt(entry("12.34", ref="B1", text="A TRANSFER"))
    batch_id = import_file(ledger, statement, CommandContext("officer:t"), file_name="s.xml")
    page = browser_page
    sign_in(page, web_url, "officer")
    page.get_by_role("link", name="Reconciliation", exact=True).click()
    page.get_by_role("heading", name="Bank reconciliation exceptions").wait_for()
    assert page.get_by_role("cell", name="£12.34").first.is_visible()
    assert page.get_by_role("cell", name="£80.00").first.is_visible()
    check_page(page, "exceptions", database_url)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the whole report (CSV)").click()
    assert download.value.suggested_filename.startswith("exceptions-")
    page.get_by_role("link", name="Line 1 of its import").click()
    page.wait_for_url(f"{web_url}/web/imports/{batch_id.batch_id}#line-1")


def test_the_exceptions_report_fits_a_small_desktop_screen_with_thousands_separated_amounts(
    chromium, web_url, in_suspense, ledger, database_url
) -> None:
    """From GOV.UK's desktop breakpoint (769 px) to about 840 px the report's seven columns,
    with a bank's 70 character reference and an amount of £14,809.19, were wider than their
    box, which scrolled sideways; no table box scrolls at any width now, and the amount reads
    with its thousands separator."""
    reference = "TFRXBANKGO24007680SJCATJPY2GBPXBANKGO24007680BGCINTERNATIONAL-5373CLIENT"
    statement = camt(entry("14809.19", ref="B1", text=reference))
    import_file(ledger, statement, CommandContext("officer:t"), file_name="s.xml")
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_in(page, web_url, "officer")
        page.goto(f"{web_url}/web/reconciliation/exceptions")
        reload_until(page, lambda: "£14,809.19" in page.content())
        assert page.get_by_role("cell", name="£14,809.19").first.is_visible()
        scrolling = {}
        for width in (769, 780, 800, 820, 840, 860, 900, 960, 1020, 1100):
            page.set_viewport_size({"width": width, "height": 900})
            boxes = page.evaluate(
                "[...document.querySelectorAll('.ledger-table-scroll')]"
                ".map(box => [box.getAttribute('aria-label'), box.scrollWidth, box.clientWidth])"
            )
            assert len(boxes) == 3, boxes  # the summary and two sections
            wide = [(name, inside, shown) for name, inside, shown in boxes if inside > shown]
            if wide or page.evaluate("document.documentElement.scrollWidth") > width:
                scrolling[width] = wide
        assert not scrolling, f"tables that scroll sideways, by screen width: {scrolling}"
        page.set_viewport_size({"width": 800, "height": 900})
        assert accessibility_problems(page) == []
        if screenshots_wanted() and database_url.startswith("sqlite"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "exceptions-800.png"), full_page=True)
    finally:
        context.close()
