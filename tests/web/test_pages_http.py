"""The pages over plain HTTP (httpx, no JavaScript), on both backends: sign-in, every page,
forms that keep what was typed and show the ledger's errors, a double submit recorded once,
CSRF and role refusals, the idle time-out; and the API's rule for bodies kept."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from application.ledger import CommandContext
from tests.domain.helpers import references_unfolded
from tests.web.conftest import CT_REFERENCE, IDLE_SECONDS, SUSPENSE_REFERENCE, token
from web.sessions import COOKIE_NAME


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} in the page"
    return found.group(1)


def allocation_form(client: httpx.Client, payment_id: object) -> tuple[str, dict[str, str]]:
    """The allocate page's path, and its form filled in to allocate the £80.00 held in
    suspense (the `in_suspense` fixture) to Council Tax."""
    path = f"/web/payments/{payment_id}/allocate"
    form_page = client.get(path)
    return path, {
        "csrf_token": hidden(form_page.text, "csrf_token"),
        "idempotency_key": hidden(form_page.text, "idempotency_key"),
        "fund_code_1": "CT",
        "reference_1": "12345679",
        "amount_1": "80.00",
        "reason": "allocated",
    }


def signed_in(base: str, who: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=20)
    page = client.get("/web/sign-in")
    answer = client.post(
        "/web/sign-in",
        data={"csrf_token": hidden(page.text, "csrf_token"), "access_key": token(who)},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/web/"
    return client


def wait_for_page(client: httpx.Client, path: str, text: str) -> httpx.Response:
    deadline = time.monotonic() + 10
    while text not in (page := client.get(path)).text:
        assert time.monotonic() < deadline, f"{path} never showed {text!r}"
        time.sleep(0.1)
    return page


def test_the_session_cookie_is_signed_http_only_strict_and_holds_no_key(web_url) -> None:
    client = signed_in(web_url, "officer")
    cookie = client.cookies.jar
    (session,) = [c for c in cookie if c.name == "ledger_session"]
    assert session.has_nonstandard_attr("HttpOnly")
    assert session.get_nonstandard_attr("SameSite").lower() == "strict"
    assert not session.secure  # served over plain http here; https sets Secure
    assert token("officer") not in session.value
    page = client.get("/web/")
    assert page.status_code == 200 and "Signed in as" in page.text
    assert token("officer") not in page.text
    assert page.headers["cache-control"] == "no-store"
    forged = session.value.replace(session.value[5], "A" if session.value[5] != "A" else "B", 1)
    client.cookies.set("ledger_session", forged)
    assert client.get("/web/").headers["location"] == "/web/sign-in"


def test_every_page_without_javascript(web_url, in_suspense, allocated, ledger) -> None:
    ledger.note(in_suspense, "payer phoned: a cheque for their rent", CommandContext("officer:o"))
    client = signed_in(web_url, "supervisor")
    dashboard = wait_for_page(client, "/web/", "£250.00")
    # Bars scaled to the largest amount, beside the tables that carry the figures.
    assert dashboard.text.count('class="ledger-chart" aria-hidden="true"') == 3
    assert 'style="width: 70.0%"' in dashboard.text and 'style="width: 22.4%"' in dashboard.text
    suspense = wait_for_page(client, "/web/suspense", SUSPENSE_REFERENCE)
    assert f"/web/payments/{in_suspense}/allocate" in suspense.text
    payment = client.get(f"/web/payments/{in_suspense}")
    assert "invalid check digit" in payment.text and "History" in payment.text
    assert "payer phoned: a cheque for their rent" in payment.text  # a note says what it says
    assert client.get(f"/web/payments/{in_suspense}/allocate").status_code == 200
    assert "No refunds are waiting" in client.get("/web/refunds").text
    missing = client.get("/web/payments/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and "Page not found" in missing.text


def test_an_allocation_shows_errors_beside_fields_keeps_what_was_typed_and_records_once(
    web_url, in_suspense, ledger
) -> None:
    client = signed_in(web_url, "officer")
    form_page = client.get(f"/web/payments/{in_suspense}/allocate")
    fields = {
        "csrf_token": hidden(form_page.text, "csrf_token"),
        "idempotency_key": hidden(form_page.text, "idempotency_key"),
        "fund_code_1": "CT",
        "reference_1": "12345679",
        "amount_1": "80,5",
        "reason": "phoned in",
    }
    path = f"/web/payments/{in_suspense}/allocate"
    refused = client.post(path, data=fields)
    assert refused.status_code == 422
    assert 'id="amount_1-error"' in refused.text and "like 12.50" in refused.text
    assert 'value="80,5"' in refused.text and 'value="phoned in"' in refused.text
    too_much = client.post(path, data=fields | {"amount_1": "90.00"})
    assert too_much.status_code == 422 and 'id="amount_1-error"' in too_much.text

    good = fields | {"amount_1": "80.00"}
    first = client.post(path, data=good)
    again = client.post(path, data=good)  # the same form sent twice
    assert first.status_code == again.status_code == 303
    payment = ledger.get_payment(in_suspense)
    assert payment["unallocated_pence"] == 0
    assert [e["action"] for e in payment["history"]].count("Allocated") == 1


def test_an_allocation_split_across_funds_with_the_error_beside_its_line(
    web_url, in_suspense, ledger
) -> None:
    client = signed_in(web_url, "officer")
    form_page = client.get(f"/web/payments/{in_suspense}/allocate")
    fields = {
        "csrf_token": hidden(form_page.text, "csrf_token"),
        "idempotency_key": hidden(form_page.text, "idempotency_key"),
        "fund_code_1": "CT",
        "reference_1": "12345679",
        "amount_1": "50.00",
        "fund_code_2": "SUN",
        "reference_2": "INV1234561",
        "amount_2": "30.00",
        "reason": "split by the payer's letter",
    }
    path = f"/web/payments/{in_suspense}/allocate"
    refused = client.post(path, data=fields)
    assert refused.status_code == 422
    assert 'id="reference_2-error"' in refused.text and "INV1234561" in refused.text
    assert 'id="reference_1-error"' not in refused.text
    assert 'value="INV1234561"' in refused.text and 'value="50.00"' in refused.text
    assert client.post(path, data=fields | {"reference_2": "INV1234560"}).status_code == 303
    allocations = ledger.get_payment(in_suspense)["allocations"]
    assert {(a["fund_code"], a["amount_pence"]) for a in allocations} == {
        ("CT", 5000),
        ("SUN", 3000),
    }
    empty = client.post(path, data={"csrf_token": fields["csrf_token"], "reason": "x"})
    assert empty.status_code == 422 and 'id="fund_code_1-error"' in empty.text


def test_a_post_without_the_csrf_token_or_with_another_is_refused(web_url, in_suspense, ledger):
    client = signed_in(web_url, "officer")
    body = {"fund_code_1": "CT", "reference_1": "12345679", "amount_1": "80.00", "reason": "x"}
    path = f"/web/payments/{in_suspense}/allocate"
    assert client.post(path, data=body).status_code == 403
    assert client.post(path, data=body | {"csrf_token": "forged"}).status_code == 403
    assert client.post("/web/sign-out", data={}).status_code == 403
    other = httpx.Client(base_url=web_url)
    assert other.post("/web/sign-in", data={"access_key": token("officer")}).status_code == 403
    assert ledger.get_payment(in_suspense)["unallocated_pence"] == 8000


@pytest.mark.parametrize(
    ("who", "path", "status"),
    [
        ("integration", "/web/", 403),
        ("reporting", "/web/suspense", 200),
        ("reporting", "/web/payments/{id}/allocate", 403),
        ("auditor", "/web/refunds", 403),
        ("officer", "/web/refunds", 403),
        ("supervisor", "/web/refunds", 200),
    ],
)
def test_role_limits(web_url, in_suspense, who, path, status) -> None:
    client = signed_in(web_url, who)
    page = client.get(path.format(id=in_suspense))
    assert page.status_code == status
    if status == 403:
        assert "You cannot use this page" in page.text
    assert ('href="/web/refunds"' in page.text) == (who == "supervisor")


def test_a_form_post_of_a_role_without_the_right_is_refused(web_url, in_suspense, ledger):
    client = signed_in(web_url, "auditor")
    csrf = hidden(client.get("/web/suspense").text, "csrf_token")
    answer = client.post(
        f"/web/payments/{in_suspense}/allocate",
        data={"csrf_token": csrf, "fund_code_1": "CT", "reference_1": "12345679", "amount_1": "80"},
    )
    assert answer.status_code == 403
    assert ledger.get_payment(in_suspense)["unallocated_pence"] == 8000


@pytest.mark.parametrize("idle_seconds", [IDLE_SECONDS])
def test_an_idle_session_ends(web_url, idle_seconds) -> None:
    client = signed_in(web_url, "officer")
    assert client.get("/web/").status_code == 200
    time.sleep(idle_seconds + 1.1)
    answer = client.get("/web/")
    assert answer.status_code == 303
    assert "signed out because you did nothing" in client.get(answer.headers["location"]).text


@pytest.mark.parametrize("idle_seconds", [IDLE_SECONDS + 1])
@pytest.mark.parametrize(
    "path",
    [
        "/web/reconciliation/exceptions.csv",
        f"/web/accounts.csv?fund_code=CT&reference={CT_REFERENCE}",
        "/web/audit/replay.csv?as_at=2026-01-01",
    ],
)
def test_downloading_a_csv_renews_the_session_as_a_page_does(
    web_url, idle_seconds, allocated, path
) -> None:
    """A user who only downloads files for longer than the idle time-out stays signed in:
    each download renews the session (they used to answer without sending it back)."""
    client = signed_in(web_url, "auditor")
    deadline = time.monotonic() + idle_seconds + 1.5
    while time.monotonic() < deadline:
        time.sleep(1.1)
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.status_code, answer.headers)
        assert answer.headers["content-type"].startswith("text/csv")
        assert COOKIE_NAME in answer.cookies, "the download did not send the session back"
        assert answer.headers["cache-control"] == "no-store"
    assert client.get("/web/").status_code == 200


def test_the_api_still_refuses_bodies_without_a_key(web_url) -> None:
    """The web pages' forms are let through to the page, which checks session and CSRF; an
    API body without a key is still refused before it is read."""
    # Generous timeouts: the first page rendered compiles its templates, slow on a busy machine.
    answer = httpx.post(f"{web_url}/payments", json={"channel": "cash"}, timeout=30)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    unsigned = httpx.post(f"{web_url}/web/payments/x/allocate", data={"amount": "1"}, timeout=30)
    assert unsigned.status_code in (303, 422)  # to sign-in, never recorded


def test_a_supervisor_declines_a_refund_with_a_reason(web_url, allocated, ledger) -> None:
    officer = signed_in(web_url, "officer")
    page = officer.get(f"/web/payments/{allocated}")
    asked = officer.post(
        f"/web/payments/{allocated}/refund",
        data={
            "csrf_token": hidden(page.text, "csrf_token"),
            "idempotency_key": hidden(page.text, "idempotency_key"),
            "amount": "200.00",
            "reason": "paid twice",
        },
    )
    assert asked.headers["location"].endswith("?done=refund_requested")
    (pending,) = ledger.get_payment(allocated)["pending_refunds"]
    supervisor = signed_in(web_url, "supervisor")
    queue = supervisor.get("/web/refunds")
    path = f"/web/payments/{allocated}/refunds/{pending['request_id']}/decline"
    form = {"csrf_token": hidden(queue.text, "csrf_token"), "idempotency_key": "decline-1"}
    no_reason = supervisor.post(path, data=form | {"reason": ""})
    assert no_reason.status_code == 422 and "There is a problem" in no_reason.text
    assert ledger.get_payment(allocated)["pending_refunds"] != []
    declined = supervisor.post(
        path, data=form | {"idempotency_key": "decline-2", "reason": "not owed"}
    )
    assert declined.headers["location"] == "/web/refunds?done=decline"
    payment = ledger.get_payment(allocated)
    assert payment["pending_refunds"] == [] and payment["refunded_pence"] == 0


def test_payment_search_by_reference_channel_status_and_dates(
    web_url, in_suspense, allocated
) -> None:
    client = signed_in(web_url, "reporting")
    assert client.get("/web/payments").status_code == 200
    found = wait_for_page(client, "/web/payments?status=suspense", "1 payment found")
    assert f"/web/payments/{in_suspense}" in found.text
    assert f"/web/payments/{allocated}" not in found.text
    by_reference = client.get("/web/payments", params={"reference": "12345679"})
    assert f"/web/payments/{allocated}" in by_reference.text
    today = by_reference.text  # the search form keeps what was asked
    assert 'value="12345679"' in today
    nothing = client.get("/web/payments", params={"channel": "cash"})
    assert "0 payments found" in nothing.text
    bad = client.get("/web/payments", params={"from": "31/03/2026", "channel": "pigeon"})
    assert bad.status_code == 422
    assert 'id="from-error"' in bad.text and 'id="channel-error"' in bad.text
    assert 'value="31/03/2026"' in bad.text


def test_errors_under_web_are_pages_and_the_api_keeps_problem_json(web_url) -> None:
    client = signed_in(web_url, "officer")
    missing = client.get("/web/no-such-page")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "Page not found" in missing.text
    wrong_method = client.delete("/web/suspense")
    assert wrong_method.status_code == 405 and "<html" in wrong_method.text
    api = httpx.get(f"{web_url}/no-such-page")
    assert api.status_code == 404
    assert api.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_database_outage_is_a_page_that_says_a_form_is_safe_to_send_again(
    web_url, in_suspense, ledger, services
) -> None:
    from tests.api.test_database_outage import database_moved_to_a_closed_port

    client = signed_in(web_url, "officer")
    path, fields = allocation_form(client, in_suspense)
    with database_moved_to_a_closed_port(ledger, services):
        page = client.get("/web/")
        sent = client.post(path, data=fields)
    for answer in (page, sent):
        assert answer.status_code == 503 and "Try again shortly" in answer.text
    assert "sending the same form again is safe" in sent.text
    assert client.post(path, data=fields).status_code == 303
    assert ledger.get_payment(in_suspense)["unallocated_pence"] == 0


def test_the_session_cookie_is_secure_when_served_over_https(services) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from web.app import install
    from web.sessions import WebConfig

    app = create_app(services)
    install(app, services, WebConfig(b"secret", 600))
    with TestClient(app, base_url="https://ledger.council.example") as client:
        page = client.get("/web/sign-in")
    cookie = page.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie


def test_the_access_log_names_who_signed_in(web_url, caplog) -> None:
    def users() -> list[str]:
        return [
            getattr(r, "user", "")
            for r in caplog.records
            if getattr(r, "path", "") == "/web/sign-in"
        ]

    with caplog.at_level("INFO", logger="api.access"):
        signed_in(web_url, "supervisor")
        # The server writes the line once the answer has gone out: wait for it.
        deadline = time.monotonic() + 5
        while "supervisor:supervisor" not in users():
            assert time.monotonic() < deadline, users()
            time.sleep(0.05)


def test_an_account_recorded_with_full_width_digits_is_found_typed_in_ascii(
    web_url, ledger, monkeypatch
) -> None:
    """Recorded before 2026-12-01 under a \\d rule, kept full-width: the account page and
    the payment search find it as an officer types it now."""
    from application.ledger import CommandContext, RecordPayment

    wide = "１２３４５６７９"  # noqa: RUF001 - full-width digits, on purpose
    ctx = CommandContext("supervisor:test")
    rule = {"min_length": 8, "max_length": 8, "pattern": "\\d{8}"}
    ledger.amend_fund("CT", {"reference_rule": rule}, ctx, "references as 0.1.0 took them")
    with references_unfolded(monkeypatch):
        ledger.record_payment(RecordPayment("cash", 4_200, wide), ctx)
    client = signed_in(web_url, "reporting")
    page = wait_for_page(client, "/web/accounts?fund_code=CT&reference=12345679", "£42.00")
    assert "CT 12345679: balance £42.00" in page.text
    found = client.get("/web/payments", params={"reference": "12345679"})
    assert "1 payment found" in found.text and wide in found.text
