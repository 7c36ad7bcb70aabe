"""The bank reconciliation exceptions report's page and its CSV over plain HTTP, on both
backends: signed out to the sign-in page, the roles the API's GET allows, a known statement
line and receipt with their amounts and links, the empty report in words, and a later page
of a report changed since (the API's 409 report_changed) told plainly, with a reload."""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from application.imports import import_file
from application.ledger import RecordPayment
from application.reconciliation import kept_books
from tests.application.test_late_statement_links import OFFICER
from tests.application.test_statement_imports import YESTERDAY, camt, entry
from tests.web.test_pages_http import signed_in

PATH = "/web/reconciliation/exceptions"


@pytest.fixture
def statement_line(ledger) -> str:
    """A statement credit of £12.34 that pays in nothing recorded: its batch id."""
    statement = camt(entry("12.34", day=YESTERDAY, ref="B1", text="A TRANSFER"))
    return str(import_file(ledger, statement, OFFICER, file_name="day.xml").batch_id)


def test_signed_out_is_sent_to_sign_in(web_url) -> None:
    # Generous: the first page on a busy machine compiles its templates (5 s timed out).
    client = httpx.Client(base_url=web_url, timeout=30)
    for path in (PATH, f"{PATH}.csv"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"] == "/web/sign-in"


@pytest.mark.parametrize("who", ["integration", "housing"])
def test_a_role_or_key_without_the_report_is_refused(web_url, who) -> None:
    """Integration may not read pages; a key limited to a fund group may not see a report of
    every fund (as the API's require_whole_ledger)."""
    client = signed_in(web_url, who)
    for path in (PATH, f"{PATH}.csv"):
        answer = client.get(path)
        assert answer.status_code == 403, path
        assert "text/csv" not in answer.headers["content-type"]


@pytest.mark.parametrize("who", ["officer", "supervisor", "auditor", "reporting"])
def test_the_page_lists_a_line_and_a_receipt_with_links_and_csv(
    web_url, statement_line, in_suspense, who
) -> None:
    client = signed_in(web_url, who)
    assert f'href="{PATH}"' in client.get("/web/").text  # the dashboard and the menu
    page = client.get(PATH)
    assert page.status_code == 200
    text = page.text
    assert "Statement lines not matched" in text and "£12.34" in text
    assert "Receipts no statement line has paid in" in text and "£80.00" in text
    assert f'href="/web/imports/{statement_line}#line-1"' in text
    assert f'href="/web/payments/{in_suspense}"' in text
    assert YESTERDAY.strftime("%-d %b %Y") in text  # a UK day as the other pages show it
    assert "Summary: 2 items in all" in text
    download = client.get(f"{PATH}.csv")
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    assert "attachment" in download.headers["content-disposition"]
    lines = download.text.splitlines()
    assert lines[0].startswith("kind,age_band") and len(lines) == 3
    assert any("statement_line" in row and "12.34" in row for row in lines)
    assert any(str(in_suspense) in row and "80.00" in row for row in lines)


def test_an_empty_report_says_so(web_url) -> None:
    page = signed_in(web_url, "officer").get(PATH)
    assert page.status_code == 200 and "No exceptions: every statement line is linked" in page.text


def test_a_page_of_a_report_changed_since_its_first_says_so_and_offers_a_reload(
    web_url, statement_line, ledger
) -> None:
    client = signed_in(web_url, "officer")
    first = client.get(PATH)
    # The report's position is the last event its books folded, which is not the ledger's
    # last event when an import's last event is its file's content claim.
    position = kept_books(ledger).position
    assert client.get(f"{PATH}?page=1&position={position}").status_code == 200
    import_file(ledger, camt(entry("5.00", ref="B2", text="MORE")), OFFICER, file_name="b.xml")
    changed = client.get(f"{PATH}?page=2&position={position}")
    assert changed.status_code == 409
    assert "The report changed since you opened its first page" in changed.text
    assert f'href="{PATH}" data-module="govuk-button">Reload the report' in changed.text
    assert first.status_code == 200 and "£5.00" in client.get(PATH).text


def test_a_long_report_pages_as_the_api_pages_it(web_url, ledger) -> None:
    """51 receipts make two pages of 50; the Next link names the first page's position,
    and the second page lists the one row left."""
    for number in range(51):
        ledger.record_payment(
            RecordPayment(channel="cheque", amount_pence=100 + number, reference=f"X{number}"),
            OFFICER,
        )
    client = signed_in(web_url, "officer")
    first = client.get(PATH)
    position = ledger.max_position()
    assert "Summary: 51 items in all" in first.text and "£1.49" in first.text
    assert "£1.50" not in first.text
    assert f'href="?page=2&amp;position={position}" rel="next"' in first.text
    second = client.get(f"{PATH}?page=2&position={position}")
    assert second.status_code == 200 and "£1.50" in second.text and "£1.49" not in second.text
    assert 'rel="prev"' in second.text and 'rel="next"' not in second.text


def test_a_line_waiting_for_a_choice_says_it_needs_a_person(web_url, two_candidates) -> None:
    batch_id, _ = two_candidates
    page = signed_in(web_url, "officer").get(PATH)
    assert "needs a person" in page.text
    assert f'href="/web/imports/{batch_id}#line-1"' in page.text


def test_a_narrative_is_shown_as_text_and_its_csv_never_runs_as_a_formula(web_url, ledger) -> None:
    """A bank's narrative is the payer's text: markup and quotes in it are shown, never run
    (the page escapes them), and one a spreadsheet would run as a formula is written with a
    leading apostrophe in the CSV (as the API's CSV: one function makes both)."""
    script = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; O&apos;BRIEN"  # (XML text)
    statement = camt(
        entry("12.34", day=YESTERDAY, ref="B1", text=script),
        entry("5.67", day=YESTERDAY, ref="B2", text='=HYPERLINK("http://x.example","y")'),
        entry("8.90", day=YESTERDAY, ref="B3", text="@SUM(1+1)"),
    )
    import_file(ledger, statement, OFFICER, file_name="day.xml")
    client = signed_in(web_url, "officer")
    page = client.get(PATH)
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    # (a reference is kept in capitals, its spaces taken out: normalise_reference)
    assert "&lt;SCRIPT&gt;ALERT(&#34;X&#34;)&lt;/SCRIPT&gt;O&#39;BRIEN" in page.text
    rows = client.get(f"{PATH}.csv").text.splitlines()[1:]
    assert len(rows) == 3
    assert any(',"\'=HYPERLINK(""HTTP://X.EXAMPLE"",""Y"")",' in row for row in rows)
    assert any(",'@SUM(1+1)," in row for row in rows)


def test_the_page_separates_thousands_and_its_csv_keeps_a_plain_number(web_url, ledger) -> None:
    """Finance staff read £14,809.19 (the summary, the row, a link's hidden words); the CSV's
    amount stays 14809.19, a number a spreadsheet sums (as 8e23750 kept -60.00 one)."""
    statement = camt(
        entry("14809.19", day=YESTERDAY, ref="B1", text="A TRANSFER"),
        entry("1000.00", day=YESTERDAY, ref="B2", text="ANOTHER"),
    )
    import_file(ledger, statement, OFFICER, file_name="day.xml")
    client = signed_in(web_url, "officer")
    text = client.get(PATH).text
    assert "£14,809.19" in text and "£1,000.00" in text
    assert "£15,809.19" in text  # the summary's total of the two lines
    assert "14809.19" not in text and "£1000.00" not in text
    rows = list(csv.DictReader(io.StringIO(client.get(f"{PATH}.csv").text)))
    assert sorted(row["amount"] for row in rows) == ["1000.00", "14809.19"]
    assert sum(float(row["amount"]) for row in rows) == pytest.approx(15809.19)


def test_an_address_edited_by_hand_is_answered_with_a_page(web_url) -> None:
    """?page=abc (or position=abc) answers a page saying what is wrong, as the other pages'
    errors do, not the API's problem+json."""
    client = signed_in(web_url, "officer")
    for query, name in (("?page=abc", "page"), ("?page=2&position=abc", "position")):
        answer = client.get(PATH + query)
        assert answer.status_code == 422
        assert answer.headers["content-type"].startswith("text/html")
        assert f"{name}: Input should be a valid integer" in answer.text
