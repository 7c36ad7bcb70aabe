"""A statement line an import rule sent to a fund is checked, and its check undone, on the
page of its import, over plain HTTP, on both backends: the reason required, a double submit
checked once, readers see no form and may not post it."""

from __future__ import annotations

import pytest

from application.import_rules import add_rule
from application.imports import get_import, import_file
from application.reconciliation import exceptions
from tests.application.test_checking_statement_lines import till_rule
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_late_statement_links import OFFICER, SUPERVISOR
from tests.application.test_statement_imports import YESTERDAY, camt, entry
from tests.domain.helpers import CT_REF
from tests.web.test_pages_http import hidden, signed_in

CHECK_FIELD = "check_reason_1"


@pytest.fixture
def rule_line(ledger) -> str:
    till_rule(ledger)
    statement = camt(entry("13.00", day=YESTERDAY, ref="B1", text="TILL DEPOSIT"))
    return str(import_file(ledger, statement, OFFICER, file_name="day.xml").batch_id)


def form_of(client, batch_id: str, action: str) -> dict[str, str]:
    page = client.get(f"/web/imports/{batch_id}")
    path = f'action="/web/imports/{batch_id}/lines/1/{action}"'
    assert page.status_code == 200 and path in page.text
    form = page.text[page.text.index(path) :]
    return {name: hidden(form, name) for name in ("csrf_token", "idempotency_key")}


def listed(ledger) -> list[int]:
    return [row["line"] for row in exceptions(ledger)["unmatched_statement_lines"]]


def test_an_officer_checks_a_line_once_and_a_supervisor_undoes_it(web_url, rule_line, ledger):
    client = signed_in(web_url, "officer")
    path = f"/web/imports/{rule_line}/lines/1/check"
    fields = form_of(client, rule_line, "check")
    before = ledger.max_position()
    no_reason = client.post(path, data=fields | {CHECK_FIELD: " "})
    assert no_reason.status_code == 422 and 'id="check_reason_1-error"' in no_reason.text
    assert ledger.max_position() == before and listed(ledger) == [1]

    good = fields | {CHECK_FIELD: "the till's paying-in slip matches"}
    first = client.post(path, data=good)
    again = client.post(path, data=good)  # a double submit: checked once
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == f"/web/imports/{rule_line}?done=checked&line=1"
    page = client.get(first.headers["location"])
    assert "was checked as right" in page.text and "the till&#39;s paying-in slip" in page.text
    assert listed(ledger) == []
    assert get_import(ledger, rule_line)["lines"][0]["checked"]["reason"].startswith("the till")

    supervisor = signed_in(web_url, "supervisor")
    fields = form_of(supervisor, rule_line, "uncheck")
    undone = supervisor.post(
        f"/web/imports/{rule_line}/lines/1/uncheck",
        data=fields | {"uncheck_reason_1": "the slip was another day's"},
    )
    assert undone.status_code == 303 and undone.headers["location"].endswith(
        "done=unchecked&line=1"
    )
    assert "Check undone" in supervisor.get(undone.headers["location"]).text
    assert listed(ledger) == [1]


@pytest.mark.parametrize("who", ["auditor", "reporting"])
def test_readers_see_no_check_form_and_may_not_post_it(web_url, rule_line, ledger, who):
    officer = signed_in(web_url, "officer")
    fields = form_of(officer, rule_line, "check") | {CHECK_FIELD: "x"}
    reader = signed_in(web_url, who)
    page = reader.get(f"/web/imports/{rule_line}")
    assert page.status_code == 200 and "/lines/1/check" not in page.text
    csrf = hidden(page.text, "csrf_token")
    path = f"/web/imports/{rule_line}/lines/1/check"
    assert reader.post(path, data=fields | {"csrf_token": csrf}).status_code == 403
    assert listed(ledger) == [1]


def test_an_allpay_files_rule_line_offers_no_check(web_url, ledger):
    """Only a bank statement's lines wait for a check: an Allpay file's receipt an import
    rule allocated is on no exceptions report, and its page offers no 'Checked' form."""
    add_rule(
        ledger,
        {"name": "CT prefix", "reference_pattern": "CT[0-9]{8}", "fund_code": "CT"}
        | {"strip_prefix": "CT"},
        SUPERVISOR,
        "CT files carry a prefix",
    )
    content = allpay_file(allpay_line(f"CT{CT_REF}", "25.00"))
    batch_id = import_file(ledger, content, OFFICER, file_name="allpay.txt").batch_id
    assert get_import(ledger, batch_id)["lines"][0]["import_rule"]
    page = signed_in(web_url, "officer").get(f"/web/imports/{batch_id}")
    assert page.status_code == 200 and "/lines/1/check" not in page.text
