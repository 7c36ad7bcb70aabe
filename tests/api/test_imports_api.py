"""A day's files through HTTP, end to end: upload, duplicate, refusal, list, reversal."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx

import application.imports
from domain.imports import UTF8_BOM
from domain.limits import uk_today
from tests.api.conftest import auth
from tests.application.test_imports import (
    STATEMENTS,
    TOTALS_MISMATCH,
    TWO_RECORDS,
    allpay_file,
    allpay_line,
    csv_file,
    needs_samples,
)
from tests.domain.helpers import CT_REF

PROBLEM = "application/problem+json"


def upload(client, content: bytes, who: str = "officer", name: str = "be.txt", **params):
    return client.post(
        "/imports", files={"file": (name, content, "text/plain")}, params=params, headers=auth(who)
    )


@needs_samples
def test_the_real_file_uploaded_then_sent_raw_is_one_import(client) -> None:
    content = (STATEMENTS / TWO_RECORDS).read_bytes()
    first = upload(client, content, who="integration", name="be0630.txt", format="allpay")
    assert first.status_code == 201, first.text
    batch = first.json()["batch"]
    assert batch["receipts_count"] == 2 and batch["receipts_pence"] == 12_000
    assert batch["imported_by"] == "integration:integration"
    assert batch["file_name"] == "be0630.txt"
    # The same bytes as a raw body: the form upload kept them exactly (CRLF included).
    again = client.post(
        "/imports?file_name=copy.txt",
        content=content,
        headers=auth("officer") | {"Content-Type": "text/plain"},
    )
    assert again.status_code == 200 and again.json()["recorded"] is False
    assert again.json()["batch"]["batch_id"] == batch["batch_id"]
    position = first.json()["position"]
    suspense = client.get(f"/suspense?min_position={position}", headers=auth("officer")).json()
    assert sum(item["amount_pence"] for item in suspense["items"]) == 12_000


@needs_samples
def test_the_real_totals_mismatch_file_is_refused_naming_why(client, ledger) -> None:
    before = ledger.max_position()
    response = upload(client, (STATEMENTS / TOTALS_MISMATCH).read_bytes())
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["code"] == "import_refused"
    reasons = [error["reason"] for error in problem["errors"]]
    assert any("trailer total 419.00 does not match" in reason for reason in reasons)
    assert ledger.max_position() == before


def test_bad_lines_are_listed_by_number(client, ledger) -> None:
    content = allpay_file(
        allpay_line(CT_REF, "1.00"),
        allpay_line(CT_REF, "1.00")[:20],
        allpay_line(CT_REF, "x"),
        total="1.00",
    )
    before = ledger.max_position()
    response = upload(client, content)
    assert response.status_code == 422
    assert [error["line"] for error in response.json()["errors"]] == [2, 3]
    assert ledger.max_position() == before
    assert client.get("/imports", headers=auth("auditor")).json()["total"] == 0


def test_roles_list_and_reverse(client) -> None:
    content = allpay_file(allpay_line(CT_REF, "30.00"), allpay_line("NOSUCH", "2.00"))
    assert upload(client, content, who="auditor").status_code == 403
    created = upload(client, content).json()
    batch_id = created["batch"]["batch_id"]
    listed = client.get(
        f"/imports?min_position={created['position']}", headers=auth("reporting")
    ).json()
    assert [b["batch_id"] for b in listed["batches"]] == [batch_id]
    assert listed["batches"][0]["receipts_pence"] == 3_200 and listed["total"] == 1
    detail = client.get(f"/imports/{batch_id}", headers=auth("auditor")).json()
    assert [line["outcome"] for line in detail["lines"]] == ["recorded", "recorded"]
    reason = {"reason": "the wrong day's file"}
    officer = client.post(f"/imports/{batch_id}/reversal", json=reason, headers=auth("officer"))
    assert officer.status_code == 403
    reversed_ = client.post(
        f"/imports/{batch_id}/reversal", json=reason, headers=auth("supervisor")
    )
    assert reversed_.status_code == 200, reversed_.text
    assert reversed_.json()["batch"]["reversed_pence"] == 3_200
    position = reversed_.json()["position"]
    funds = client.get(f"/balances/funds?min_position={position}", headers=auth("officer"))
    ct = next(f for f in funds.json()["funds"] if f["fund_code"] == "CT")
    assert ct["balance_pence"] == 0
    row = client.get(f"/imports?min_position={position}", headers=auth("officer")).json()
    assert row["batches"][0]["reversed_by"] == "supervisor:supervisor"
    twice = client.post(f"/imports/{batch_id}/reversal", json=reason, headers=auth("supervisor"))
    assert twice.status_code == 409 and twice.json()["code"] == "nothing_to_reverse"
    missing = client.get(f"/imports/{created['batch']['sha256'][:8]}", headers=auth("officer"))
    assert missing.status_code == 422


def test_an_upload_may_exceed_the_command_body_limit_up_to_its_own(client, services) -> None:
    day = (uk_today() - timedelta(days=1)).isoformat()
    rows = [f"cash,1.00,{CT_REF},{day},till-{n:06d}-{'x' * 60}," for n in range(1000)]
    content = csv_file(*rows)
    assert services.config.max_body_bytes < len(content) < services.config.max_import_bytes
    response = upload(client, content, expect_total_pence=100_000, expect_count=1000)
    assert response.status_code == 201, response.text
    assert response.json()["batch"]["receipts_count"] == 1000
    too_big = b"x" * (services.config.max_import_bytes + 1)
    response = client.post("/imports", content=too_big, headers=auth("officer"))
    assert response.status_code == 413 and response.json()["code"] == "body_too_large"
    other = client.post("/payments", content=b"x" * len(content), headers=auth("officer"))
    assert other.status_code == 413


def test_a_form_without_the_file_field_is_refused(client) -> None:
    response = client.post(
        "/imports", files={"other": ("a", b"x", "text/plain")}, headers=auth("officer")
    )
    assert response.status_code == 422 and response.json()["code"] == "import_file_missing"


def test_a_statement_with_an_unreadable_amount_or_date_is_refused_not_a_500(client, ledger) -> None:
    """Decimal("Infinity") and date.fromisoformat("2026-02-30") raised errors the import did
    not expect: a 500 with nothing to fix. Now a 422 naming the value, nothing recorded."""
    from tests.application.test_statement_imports import TODAY, camt, entry

    good = camt(entry("25.00", ref="B1"))
    before = ledger.max_position()
    for bad, says in [
        (good.replace(b">25.00<", b">Infinity<"), "amount 'Infinity' is not a number"),
        (good.replace(f"<BookgDt><Dt>{TODAY}".encode(), b"<BookgDt><Dt>2026-02-30"), "2026-02-30"),
    ]:
        response = upload(client, bad, name="statement.xml")
        assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == "import_refused"
        assert any(says in error["reason"] for error in response.json()["errors"])
    assert ledger.max_position() == before


def test_a_broken_bai2_or_mt940_upload_is_a_422_naming_the_line_to_fix(client, ledger) -> None:
    from tests.application.test_statement_imports import bai2, mt940

    rows = mt940(("C", "12,50", "REF1")).decode().split("\r\n")
    rows[3] = ":60F:C261301GBP100,00"
    before = ledger.max_position()
    for bad, name, says in [
        (bai2(amount="x12"), "day.bai2", "line 4 (record 16, a transaction): the amount 'x12'"),
        ("\r\n".join(rows).encode(), "day.sta", "line 4 (field :60F:, the opening balance)"),
    ]:
        response = upload(client, bad, name=name)
        assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
        assert response.json()["code"] == "import_refused"
        assert any(says in error["reason"] for error in response.json()["errors"]), response.text
    assert ledger.max_position() == before


def test_a_statement_with_a_malformed_amount_is_refused_whole_not_misread(client, ledger) -> None:
    """Each file's balances agree with what the parsers used to make of its amount, so
    each imported: an MT940 "1x,50" as £1.00, a BAI2 "-1250" and a camt "-25.00" as
    credits of minus £12.50 and £25.00. Now each is refused whole, naming the line."""
    from tests.application.test_statement_imports import bai2, camt, entry, mt940

    swift = mt940(("C", "1,00", "REF1")).replace(b"C1,00NTRF", b"C1x,50NTRF")
    bank = (
        bai2()
        .replace(b"16,399,1250,", b"16,399,-1250,")
        .replace(b"015,11250,", b"015,8750,")
        .replace(b",22500,", b",17500,")
    )
    xml = camt(entry("25.00", ref="B1"), closing="975.00").replace(b">25.00<", b">-25.00<")
    before = ledger.max_position()
    for bad, name, says in [
        (swift, "day.sta", "line 5 (field :61:, a statement line): the amount '1x,50'"),
        (bank, "day.bai2", "line 4 (record 16, a transaction): the amount '-1250'"),
        (xml, "day.xml", "statement S1, entry 1 (Ntry): amount '-25.00' has a minus sign"),
    ]:
        response = upload(client, bad, name=name)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "import_refused"
        assert "refused whole, nothing was recorded" in response.json()["detail"]
        assert any(says in error["reason"] for error in response.json()["errors"]), response.text
    assert ledger.max_position() == before


@needs_samples
def test_an_import_says_why_each_line_went_to_suspense(client) -> None:
    created = upload(client, (STATEMENTS / TWO_RECORDS).read_bytes(), name="be0630.txt")
    batch_id = created.json()["batch"]["batch_id"]
    detail = client.get(f"/imports/{batch_id}", headers=auth("auditor")).json()
    assert [line["suspense_reason"] for line in detail["lines"]] == ["no_matching_fund"] * 2


def test_a_copy_with_other_line_endings_answers_200_naming_the_first_import(client, ledger) -> None:
    content = allpay_file(allpay_line(CT_REF, "25.00"))
    first = upload(client, content, name="monday.txt")
    assert first.status_code == 201, first.text
    position = ledger.max_position()
    for copy in (content.replace(b"\r\n", b"\n"), content.removesuffix(b"\r\n")):
        again = upload(client, copy, name="monday-copy.txt")
        assert again.status_code == 200 and again.json()["recorded"] is False, again.text
        assert again.json()["batch"]["batch_id"] == first.json()["batch"]["batch_id"]
        assert again.json()["batch"]["file_name"] == "monday.txt"
    assert ledger.max_position() == position


def test_two_copies_uploaded_at_the_same_moment_are_one_import(
    base_url, ledger, monkeypatch
) -> None:
    """Two copies of one file saved otherwise (CRLF, and LF with a byte order mark),
    uploaded at once to a real server: both are checked and find nothing imported, then
    save together. One is recorded (201); the other's save collides with its content
    claim, stores nothing and answers 200 naming it (before, both were recorded: 201 and
    201, the day's income counted twice)."""
    content = allpay_file(allpay_line(CT_REF, "25.00"), allpay_line("NOSUCH", "5.00"))
    copies = [content, UTF8_BOM + content.replace(b"\r\n", b"\n")]
    barrier = threading.Barrier(len(copies))
    record = application.imports._record

    def together(*args, **kwargs):
        barrier.wait(60)
        return record(*args, **kwargs)

    monkeypatch.setattr(application.imports, "_record", together)

    def send(copy: bytes) -> httpx.Response:
        files = {"file": ("monday.txt", copy, "text/plain")}
        return http.post("/imports", files=files, headers=auth("officer"))

    with httpx.Client(base_url=base_url, timeout=60) as http, ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(send, copies))
    assert Counter(r.status_code for r in responses) == {201: 1, 200: 1}, [
        r.text for r in responses
    ]
    assert len({r.json()["batch"]["batch_id"] for r in responses}) == 1
    events = Counter(type(event).__name__ for _, event in ledger.read_events())
    assert (events["Imported"], events["Received"]) == (1, 2), events
