"""The account statement, transfer and reversal forms, the auditor's pages, the import upload
and the sign-in limit over plain HTTP (no JavaScript), on both backends."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import httpx
import pytest

from application.imports import import_file
from application.ledger import CommandContext
from application.reconciliation import exceptions
from domain.limits import uk_today
from tests.api.conftest import eventually
from tests.application.test_statement_imports import camt, entry
from tests.web.conftest import CT_REFERENCE, token
from tests.web.test_pages_http import hidden, signed_in, wait_for_page

STATEMENT = f"/web/accounts?fund_code=CT&reference={CT_REFERENCE}"


def form_of(client: httpx.Client, path: str) -> dict[str, str]:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return {name: hidden(page.text, name) for name in ("csrf_token", "idempotency_key")}


def test_an_account_statement_with_dates_running_balance_and_csv(web_url, allocated) -> None:
    client = signed_in(web_url, "reporting")
    page = wait_for_page(client, STATEMENT, "Allocated")
    assert "balance £250.00" in page.text and "Carried forward" in page.text
    today = uk_today()
    later = client.get(STATEMENT + f"&from={today + timedelta(days=1)}")
    assert "Allocated" not in later.text  # nothing effective from tomorrow
    assert later.text.count("£250.00") >= 2  # brought and carried forward
    download = client.get(f"/web/accounts.csv?fund_code=CT&reference={CT_REFERENCE}")
    assert download.headers["content-type"].startswith("text/csv")
    assert "attachment" in download.headers["content-disposition"]
    (row,) = list(csv.DictReader(io.StringIO(download.text)))
    assert row["amount_pence"] == "25000" and row["balance_pence"] == "25000"
    assert row["effective_date"] == today.isoformat()
    bad = client.get("/web/accounts", params={"fund_code": "NOPE", "reference": "1"})
    assert bad.status_code == 422 and 'id="fund_code-error"' in bad.text
    backwards = client.get(STATEMENT + "&from=2026-04-02&to=2026-04-01")
    assert backwards.status_code == 422 and 'id="to-error"' in backwards.text
    assert client.get("/web/accounts.csv?fund_code=CT").status_code == 422


def test_a_transfer_shows_errors_beside_fields_keeps_what_was_typed_and_records_once(
    web_url, allocated, ledger
) -> None:
    client = signed_in(web_url, "officer")
    path = f"/web/payments/{allocated}/transfer"
    fields = form_of(client, path) | {
        "from_account": f"CT:{CT_REFERENCE}",
        "fund_code": "CT",
        "reference": "12345678",  # fails the check digit
        "amount": "300.00",
        "reason": "paid the wrong account",
    }
    refused = client.post(path, data=fields)
    assert refused.status_code == 422
    assert 'id="reference-error"' in refused.text and "check digit" in refused.text
    assert 'value="300.00"' in refused.text and 'value="paid the wrong account"' in refused.text
    too_much = client.post(path, data=fields | {"reference": "INV1234560", "fund_code": "SUN"})
    assert too_much.status_code == 422 and 'id="amount-error"' in too_much.text
    good = fields | {"reference": "INV1234560", "fund_code": "SUN", "amount": "50.00"}
    first = client.post(path, data=good)
    again = client.post(path, data=good)
    assert first.status_code == again.status_code == 303
    assert first.headers["location"].endswith("?done=transferred")
    payment = ledger.get_payment(allocated)
    assert [e["action"] for e in payment["history"]].count("Transferred") == 1
    assert {(a["fund_code"], a["amount_pence"]) for a in payment["allocations"]} >= {
        ("SUN", 5000),
        ("CT", 20000),
    }


def test_a_reversal_records_once_and_a_second_says_why_not(web_url, in_suspense, ledger):
    client = signed_in(web_url, "supervisor")
    path = f"/web/payments/{in_suspense}/reverse"
    fields = form_of(client, path) | {"reason": "cheque returned unpaid"}
    no_kind = client.post(path, data=fields)
    assert no_kind.status_code == 422 and 'id="kind-error"' in no_kind.text
    assert 'value="cheque returned unpaid"' in no_kind.text
    good = fields | {"kind": "returned_cheque"}
    assert client.post(path, data=good).status_code == 303
    assert client.post(path, data=good).status_code == 303  # the same form again
    payment = ledger.get_payment(in_suspense)
    assert payment["reversed_pence"] == 8000
    assert [e["action"] for e in payment["history"]].count("Reversed") == 1
    another = client.post(path, data=form_of(client, path) | good | {"reason": "again"})
    assert another.status_code == 422 and "There is a problem" in another.text


@pytest.mark.parametrize("form", ["transfer", "reverse"])
def test_the_new_forms_refuse_a_post_without_csrf_or_from_a_reader(
    web_url, allocated, ledger, form
) -> None:
    client = signed_in(web_url, "officer")
    path = f"/web/payments/{allocated}/{form}"
    body = {
        "from_account": f"CT:{CT_REFERENCE}",
        "fund_code": "SUN",
        "reference": "INV1234560",
        "amount": "1.00",
        "kind": "chargeback",
        "reason": "x",
    }
    assert client.post(path, data=body).status_code == 403
    assert client.post(path, data=body | {"csrf_token": "forged"}).status_code == 403
    auditor = signed_in(web_url, "auditor")
    assert auditor.get(path).status_code == 403
    csrf = hidden(auditor.get("/web/").text, "csrf_token")
    assert auditor.post(path, data=body | {"csrf_token": csrf}).status_code == 403
    assert len(ledger.get_payment(allocated)["history"]) == 2  # recorded and allocated


@pytest.mark.parametrize("who", ["officer", "supervisor", "reporting"])
def test_only_auditors_open_the_auditor_pages(web_url, who) -> None:
    client = signed_in(web_url, who)
    for path in ("/web/audit/replay", "/web/audit/trial-balance", "/web/audit/replay.csv"):
        page = client.get(path)
        assert page.status_code == 403 and "You cannot use this page" in page.text
    assert 'href="/web/audit/replay"' not in client.get("/web/accounts").text


def test_the_auditor_replays_as_at_a_date_and_sees_the_trial_balance(
    web_url, allocated, in_suspense
) -> None:
    client = signed_in(web_url, "auditor")
    assert 'href="/web/audit/trial-balance"' in client.get("/web/").text
    today = uk_today().isoformat()
    replay = client.get("/web/audit/replay", params={"as_at": today})
    assert replay.status_code == 200
    assert "£250.00" in replay.text and "£80.00" in replay.text  # CT, and suspense
    rows = list(
        csv.DictReader(io.StringIO(client.get(f"/web/audit/replay.csv?as_at={today}").text))
    )
    assert {"kind": "suspense", "fund_code": "", "balance_pence": "8000", "vat_pence": "0"} in rows
    assert {r["fund_code"]: r["balance_pence"] for r in rows if r["kind"] == "fund"}[
        "CT"
    ] == "25000"
    before = client.get("/web/audit/replay", params={"as_at": "2020-01-01"})
    assert "£250.00" not in before.text
    trial = client.get("/web/audit/trial-balance", params={"as_at": today})
    assert "The ledger balances" in trial.text and "income:CT" in trial.text
    download = client.get(f"/web/audit/trial-balance.csv?as_at={today}")
    accounts = list(csv.DictReader(io.StringIO(download.text)))
    assert sum(int(a["balance_pence"]) for a in accounts) == 0
    assert f"income:CT:{CT_REFERENCE}" in {a["account"] for a in accounts}
    bad = client.get("/web/audit/trial-balance", params={"as_at": "31/03/2026"})
    assert bad.status_code == 422 and 'id="as_at-error"' in bad.text
    assert 'value="31/03/2026"' in bad.text


def csv_upload(client: httpx.Client, content: bytes, **fields: str) -> httpx.Response:
    csrf = hidden(client.get("/web/imports/upload").text, "csrf_token")
    return client.post(
        "/web/imports/upload",
        data={"csrf_token": csrf, **fields},
        files={"file": ("day.csv", content, "text/csv")},
    )


def day_csv(*amounts: str) -> bytes:
    day = (uk_today() - timedelta(days=1)).isoformat()
    rows = [f"cash,{amount},{CT_REFERENCE},{day},till-{n},CT" for n, amount in enumerate(amounts)]
    return "\n".join(
        ["channel,amount,reference,received_date,external_id,fund_code", *rows]
    ).encode()


def test_an_upload_refused_names_every_bad_line_and_a_good_one_imports_once(
    web_url, ledger
) -> None:
    client = signed_in(web_url, "officer")
    before = ledger.max_position()
    refused = csv_upload(
        client, day_csv("12.50", "1.005", "abc"), expect_total="14.00", expect_count="3"
    )
    assert refused.status_code == 422 and "nothing was recorded" in refused.text
    assert "Lines refused (2)" in refused.text
    assert 'value="14.00"' in refused.text  # what was typed is kept
    assert ledger.max_position() == before
    missing = csv_upload(client, b"")
    assert missing.status_code == 422 and 'id="file-error"' in missing.text

    good = day_csv("12.50", "7.50")
    first = csv_upload(client, good, expect_total="20.00", expect_count="2")
    assert first.status_code == 303 and first.headers["location"].endswith("?done=imported")
    batch = client.get(first.headers["location"])
    assert "The file was imported." in batch.text and "£20.00" in batch.text
    again = csv_upload(client, good, expect_total="20.00", expect_count="2")
    assert again.headers["location"] == first.headers["location"].replace("imported", "known")
    assert ledger.max_position() > before
    listing = wait_for_page(client, "/web/imports", "day.csv")
    assert "1 file imported" in listing.text


def test_a_csv_uploaded_without_its_totals_asks_for_them_beside_the_fields(web_url, ledger):
    """Not the CLI's words (--expect-total) on an error page: the form again, as typed, with
    each missing total asked for beside its field, and nothing recorded."""
    client = signed_in(web_url, "officer")
    before = ledger.max_position()
    page = csv_upload(client, day_csv("12.50"), file_format="csv", expect_count="1")
    assert page.status_code == 422 and 'id="expect_total-error"' in page.text
    assert "Enter the CSV file&#39;s total in pounds" in page.text
    assert 'id="expect_count-error"' not in page.text and 'value="1"' in page.text
    assert "--expect-total" not in page.text and 'name="csrf_token"' in page.text
    detected = csv_upload(client, day_csv("12.50"))  # a CSV by its header, no totals at all
    assert detected.status_code == 422 and 'id="expect_count-error"' in detected.text
    assert ledger.max_position() == before


def test_a_file_uploaded_after_its_statement_line_gets_the_line_linked(web_url, ledger) -> None:
    """The day's till file uploaded on the page after the bank statement paying it in was
    imported: the line, first a receipt of its own, is linked to the file by itself."""
    yesterday = uk_today() - timedelta(days=1)
    statement = camt(entry("20.00", ref="B1", text="CASH PAID IN", day=yesterday))
    import_file(ledger, statement, CommandContext("officer:test"), file_name="stmt.xml")
    assert len(exceptions(ledger)["unmatched_statement_lines"]) == 1
    client = signed_in(web_url, "officer")
    uploaded = csv_upload(client, day_csv("12.50", "7.50"), expect_total="20.00", expect_count="2")
    assert uploaded.status_code == 303, uploaded.text

    def linked() -> bool:
        report = exceptions(ledger)
        return report["unmatched_statement_lines"] == report["unmatched_receipts"] == []

    assert eventually(linked)


def test_an_upload_without_csrf_or_by_a_reader_is_refused(web_url, ledger) -> None:
    client = signed_in(web_url, "officer")
    before = ledger.max_position()
    answer = client.post(
        "/web/imports/upload", data={}, files={"file": ("day.csv", day_csv("1.00"), "text/csv")}
    )
    assert answer.status_code == 403
    reporting = signed_in(web_url, "reporting")
    assert reporting.get("/web/imports/upload").status_code == 403
    assert "No files imported yet" in reporting.get("/web/imports").text
    assert ledger.max_position() == before


def test_sign_in_is_refused_after_five_failures_from_one_address(web_url) -> None:
    client = httpx.Client(base_url=web_url, timeout=20)

    def attempt(key: str) -> httpx.Response:
        csrf = hidden(client.get("/web/sign-in").text, "csrf_token")
        return client.post("/web/sign-in", data={"csrf_token": csrf, "access_key": key})

    for _ in range(5):
        assert attempt("not-a-key-of-anyone").status_code == 401
    refused = attempt(token("officer"))  # even the right key, for now
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
    assert "wait 15 minutes" in refused.text
