"""A bank statement uploaded through HTTP, then the reconciliation exceptions report."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from tests.api.conftest import auth, upload_statement
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_statement_imports import camt, entry
from tests.domain.helpers import CT_REF


def test_a_statement_upload_and_the_exceptions_report_in_json_and_csv(client) -> None:
    card = client.post(
        "/payments",
        headers=auth("officer"),
        json={"channel": "card", "amount_pence": 4_321, "reference": "JUNK"},
    )
    assert card.status_code == 201, card.text
    statement = camt(entry("25.00", ref="B1"), entry("43.21", ref="B2"))
    uploaded = client.post(
        "/imports",
        files={"file": ("stmt.xml", statement, "application/xml")},
        headers=auth("integration"),
    )
    assert uploaded.status_code == 201, uploaded.text
    batch = uploaded.json()["batch"]
    assert batch["file_format"] == "camt053" and batch["receipts_pence"] == 2_500
    lines = client.get(f"/imports/{batch['batch_id']}", headers=auth("officer")).json()["lines"]
    assert [line["outcome"] for line in lines] == ["recorded", "reconciled"]
    assert lines[1]["matched_payment_ids"] == [card.json()["payment"]["payment_id"]]

    report = client.get("/reconciliation/exceptions", headers=auth("reporting"))
    assert report.status_code == 200, report.text
    (line,) = report.json()["unmatched_statement_lines"]
    assert line["amount_pence"] == 2_500 and line["age_band"] == "0-3 days"
    assert report.json()["unmatched_receipts"] == []
    as_csv = client.get(
        "/reconciliation/exceptions", headers=auth("auditor") | {"Accept": "text/csv"}
    )
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = as_csv.text.splitlines()
    assert rows[0].startswith("kind,age_band,age_days,date,amount")
    assert rows[1].startswith("statement_line,0-3 days,0,") and ",25.00,bank_transfer," in rows[1]
    assert client.get("/reconciliation/exceptions", headers=auth("integration")).status_code == 403


STATEMENT_THEN_ALLPAY = (
    ("stmt.xml", camt(entry("7.00", ref="B1", text="ALLPAY LTD"))),
    ("be.txt", allpay_file(allpay_line(CT_REF, "3.00"), allpay_line(CT_REF, "4.00"))),
)


def _upload(client, name: str, content: bytes) -> dict:
    uploaded = client.post("/imports", files={"file": (name, content)}, headers=auth("integration"))
    assert uploaded.status_code == 201, uploaded.text
    return uploaded.json()


def test_the_allpay_file_uploaded_after_the_statement_links_it_by_itself(client) -> None:
    assert _upload(client, *STATEMENT_THEN_ALLPAY[0])["late_links"] == []
    uploaded = _upload(client, *STATEMENT_THEN_ALLPAY[1])
    (link,) = uploaded["late_links"]
    assert (link["file_name"], link["line"], link["rule"]) == ("stmt.xml", 1, "import_total")
    assert link["matched_batch_id"] == uploaded["batch"]["batch_id"]
    report = client.get("/reconciliation/exceptions", headers=auth("officer")).json()
    assert report["unmatched_statement_lines"] == [] and report["unmatched_receipts"] == []
    reversal = client.get(f"/payments/{link['reversed_payment_id']}", headers=auth("officer"))
    assert reversal.json()["history"][-1]["actor"] == "system:auto-link"
    again = client.post("/reconciliation/links", headers=auth("officer"))
    assert again.json() == {"links": []}


def test_an_allpay_file_uploaded_after_the_statement_is_linked_over_http(client, services) -> None:
    services.config = replace(services.config, auto_link_statements=False)
    for name, content in STATEMENT_THEN_ALLPAY:
        assert _upload(client, name, content)["late_links"] == []
    counted_twice = client.get("/reconciliation/exceptions", headers=auth("officer")).json()
    assert len(counted_twice["unmatched_statement_lines"]) == 1
    assert client.post("/reconciliation/links", headers=auth("auditor")).status_code == 403
    linked = client.post("/reconciliation/links", headers=auth("officer"))
    assert linked.status_code == 200, linked.text
    (link,) = linked.json()["links"]
    assert (link["file_name"], link["line"], link["rule"]) == ("stmt.xml", 1, "import_total")
    reversed_receipt = client.get(
        f"/payments/{link['reversed_payment_id']}", headers=auth("officer")
    ).json()
    assert reversed_receipt["status"] == "reversed"
    again = client.post("/reconciliation/links", headers=auth("integration"))
    assert again.json() == {"links": []}
    report = client.get("/reconciliation/exceptions", headers=auth("officer")).json()
    assert report["unmatched_statement_lines"] == [] and report["unmatched_receipts"] == []


def test_a_wrong_link_undone_over_http_counts_the_line_again(client) -> None:
    statement = camt(entry("7.00", ref="B1", text="ALLPAY LTD"))
    allpay = allpay_file(allpay_line(CT_REF, "3.00"), allpay_line(CT_REF, "4.00"))
    batch_ids, late_links = [], []
    for name, content in (("stmt.xml", statement), ("be.txt", allpay)):
        uploaded = client.post(
            "/imports", files={"file": (name, content)}, headers=auth("integration")
        )
        assert uploaded.status_code == 201, uploaded.text
        batch_ids.append(uploaded.json()["batch"]["batch_id"])
        late_links += uploaded.json()["late_links"]
    (link,) = late_links  # linked by the Allpay file's upload
    undo = {"batch_id": batch_ids[0], "line": 1, "reason": "a payer's own transfer"}
    assert (
        client.post("/reconciliation/unlinks", json=undo, headers=auth("integration")).status_code
        == 403
    )
    undone = client.post("/reconciliation/unlinks", json=undo, headers=auth("officer"))
    assert undone.status_code == 200, undone.text
    (item,) = undone.json()["undone"]
    assert (item["line"], item["rule"]) == (1, "import_total")
    assert item["restored_payment_id"] == link["reversed_payment_id"]
    receipt = client.get(f"/payments/{item['restored_payment_id']}", headers=auth("officer"))
    assert (receipt.json()["status"], receipt.json()["unallocated_pence"]) == ("suspense", 700)
    report = client.get("/reconciliation/exceptions", headers=auth("officer")).json()
    assert [row["line"] for row in report["unmatched_statement_lines"]] == [1]
    assert sorted(r["amount_pence"] for r in report["unmatched_receipts"]) == [300, 400]
    # The rejected pairing is not made again, by a run or after the next upload; a second
    # undo, and unknown lines, are refused.
    assert client.post("/reconciliation/links", headers=auth("officer")).json() == {"links": []}
    later = allpay_file(allpay_line(CT_REF, "1.00"))
    uploaded = client.post("/imports", files={"file": ("be2.txt", later)}, headers=auth("officer"))
    assert uploaded.status_code == 201 and uploaded.json()["late_links"] == []
    again = client.post("/reconciliation/unlinks", json=undo, headers=auth("supervisor"))
    assert again.status_code == 409 and again.json()["code"] == "line_not_linked"
    assert again.headers["content-type"].startswith("application/problem+json")
    unknown = client.post(
        "/reconciliation/unlinks", json=undo | {"line": 9}, headers=auth("officer")
    )
    assert unknown.status_code == 404 and unknown.json()["code"] == "import_line_not_found"
    no_reason = client.post(
        "/reconciliation/unlinks", json=undo | {"reason": ""}, headers=auth("officer")
    )
    assert no_reason.status_code == 422
    # A person who checked it links the line to the same receipts after all.
    again = f"/reconciliation/links/{batch_ids[0]}/1"
    assert client.post(again, headers=auth("integration")).status_code == 403
    relinked = client.post(again, headers=auth("supervisor"))
    assert relinked.status_code == 200, relinked.text
    (link_again,) = relinked.json()["links"]
    assert link_again["matched_payment_ids"] == link["matched_payment_ids"]
    assert client.post(again, headers=auth("officer")).json()["code"] == "line_not_awaiting_link"
    report = client.get("/reconciliation/exceptions", headers=auth("officer")).json()
    assert report["unmatched_statement_lines"] == []
    assert [r["amount_pence"] for r in report["unmatched_receipts"]] == [100]
    # A supervisor then reverses the statement: nothing of it is left on the report.
    reversed_ = client.post(
        f"/imports/{batch_ids[0]}/reversal",
        json={"reason": "another account's statement"},
        headers=auth("supervisor"),
    )
    assert reversed_.status_code == 200, reversed_.text
    report = client.get("/reconciliation/exceptions", headers=auth("officer")).json()
    assert report["unmatched_statement_lines"] == []
    assert sorted(r["amount_pence"] for r in report["unmatched_receipts"]) == [100, 300, 400]


def test_an_upload_stands_when_the_run_after_it_fails(client, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    _upload(client, *STATEMENT_THEN_ALLPAY[0])
    monkeypatch.setattr("application.reconciliation._link_once", broken)
    uploaded = _upload(client, *STATEMENT_THEN_ALLPAY[1])  # 201: recorded
    assert uploaded["recorded"] and uploaded["late_links"] == []
    monkeypatch.undo()
    (link,) = client.post("/reconciliation/links", headers=auth("officer")).json()["links"]
    assert link["matched_batch_id"] == uploaded["batch"]["batch_id"]


def test_a_line_two_receipts_may_pay_in_is_chosen_by_a_person_over_http(client) -> None:
    paid = []
    for _ in range(2):  # two card payments of 9.00 taken at a till today
        card = client.post(
            "/payments",
            headers=auth("officer"),
            json={"channel": "card", "amount_pence": 900, "reference": "JUNK"},
        )
        assert card.status_code == 201, card.text
        paid.append(card.json()["payment"]["payment_id"])
    batch = _upload(client, "stmt.xml", camt(entry("9.00", ref="B1", text="CARD TAKINGS")))["batch"]
    (line,) = client.get(f"/imports/{batch['batch_id']}", headers=auth("auditor")).json()["lines"]
    assert line["outcome"] == "recorded"
    assert sorted(c["payment_ids"][0] for c in line["candidates"]) == sorted(paid)
    report = client.get("/reconciliation/exceptions", headers=auth("reporting")).json()
    (row,) = report["unmatched_statement_lines"]
    assert row["candidates"] == line["candidates"]
    assert {c["channels"][0] for c in row["candidates"]} == {"card"}
    as_csv = client.get(
        "/reconciliation/exceptions", headers=auth("auditor") | {"Accept": "text/csv"}
    )
    header, first = as_csv.text.splitlines()[:2]
    assert header.endswith(",line,candidates") and all(pid in first for pid in paid)

    again = f"/reconciliation/links/{batch['batch_id']}/1"
    needs = client.post(again, headers=auth("officer"))
    assert needs.status_code == 409 and needs.json()["code"] == "line_needs_a_choice"
    choice = {"batch_id": batch["batch_id"], "line": 1, "payment_id": paid[1], "reason": "bag 7"}
    for who in ("integration", "auditor", "reporting"):
        assert (
            client.post("/reconciliation/choices", json=choice, headers=auth(who)).status_code
            == 403
        )
    wrong = client.post(
        "/reconciliation/choices", json=choice | {"payment_id": "nope"}, headers=auth("officer")
    )
    assert wrong.status_code == 409 and wrong.json()["code"] == "not_a_candidate"
    no_reason = client.post(
        "/reconciliation/choices", json=choice | {"reason": ""}, headers=auth("officer")
    )
    assert no_reason.status_code == 422
    chosen = client.post("/reconciliation/choices", json=choice, headers=auth("supervisor"))
    assert chosen.status_code == 200, chosen.text
    (link,) = chosen.json()["links"]
    assert link["matched_payment_ids"] == [paid[1]] and link["rule"] == "one_receipt"
    reversal = client.get(f"/payments/{link['reversed_payment_id']}", headers=auth("officer"))
    last = reversal.json()["history"][-1]
    assert "supervisor" in last["actor"]
    assert last["reason"].endswith("; chosen by a person: bag 7")
    report = client.get("/reconciliation/exceptions", headers=auth("officer")).json()
    assert report["unmatched_statement_lines"] == []
    assert [r["payment_id"] for r in report["unmatched_receipts"]] == [paid[0]]
    undo = {"batch_id": batch["batch_id"], "line": 1, "reason": "the other bag"}
    assert (
        client.post("/reconciliation/unlinks", json=undo, headers=auth("officer")).status_code
        == 200
    )


def test_two_lines_of_one_receipts_amount_wait_and_a_person_links_one_over_http(client) -> None:
    """Two credit lines of 9.00 and one receipt of 9.00: neither line is linked (which one
    pays it in would be a guess), "link again" is refused, both offer the receipt; once a
    person chooses it for one, the other no longer offers it."""
    batch = _upload(
        client,
        "stmt.xml",
        camt(entry("9.00", ref="B1", text="CARD TAKINGS"), entry("9.00", ref="B2", text="BAG")),
    )["batch"]
    card = client.post(
        "/payments",
        headers=auth("officer"),
        json={"channel": "card", "amount_pence": 900, "reference": "JUNK"},
    )
    paid = card.json()["payment"]["payment_id"]
    assert client.post("/reconciliation/links", headers=auth("officer")).json() == {"links": []}
    lines = client.get(f"/imports/{batch['batch_id']}", headers=auth("auditor")).json()["lines"]
    assert [[c["payment_id"] for c in line["candidates"]] for line in lines] == [[paid], [paid]]
    needs = client.post(f"/reconciliation/links/{batch['batch_id']}/1", headers=auth("officer"))
    assert needs.status_code == 409 and needs.json()["code"] == "line_needs_a_choice"
    choice = {"batch_id": batch["batch_id"], "line": 1, "payment_id": paid, "reason": "slip"}
    chosen = client.post("/reconciliation/choices", json=choice, headers=auth("officer"))
    assert chosen.status_code == 200, chosen.text
    report = client.get("/reconciliation/exceptions", headers=auth("officer")).json()
    (row,) = report["unmatched_statement_lines"]
    assert (row["line"], row["candidates"]) == (2, [])
    taken = client.post(
        "/reconciliation/choices", json=choice | {"line": 2}, headers=auth("officer")
    )
    assert taken.status_code == 409 and taken.json()["code"] == "not_a_candidate"


def _two_settlement_days_of_one_payout(services) -> list[date]:
    """A £100.00 GOV.UK Pay payment (fee 20p) captured on each of two days (1 and 3 days ago):
    each day's payout is £99.80; the days, newest first."""
    from tests.application.test_card_payouts import pay, send
    from tests.application.test_statement_imports import TODAY

    days = [TODAY - timedelta(days=n) for n in (1, 3)]
    for n, day in enumerate(days):
        summary = {"captured_date": day.isoformat()}
        send(
            services.ledger,
            pay("card_payment_captured", f"p{n}", fee=20, settlement_summary=summary),
        )
    return days


def test_a_payout_two_settlement_days_make_is_chosen_by_a_person_over_http(
    client, services
) -> None:
    days = _two_settlement_days_of_one_payout(services)
    batch = _upload(client, "stmt.xml", camt(entry("99.80", ref="P1", text="GOVUK PAY")))["batch"]
    (line,) = client.get(f"/imports/{batch['batch_id']}", headers=auth("officer")).json()["lines"]
    assert line["outcome"] == "recorded"
    assert [(c["rule"], c["settled_day"]) for c in line["candidates"]] == [
        ("card_payout", day.isoformat()) for day in days
    ]
    report = client.get("/reconciliation/exceptions", headers=auth("reporting")).json()
    assert report["unmatched_statement_lines"][0]["candidates"] == line["candidates"]
    older = line["candidates"][1]["payment_id"]
    choice = {"batch_id": batch["batch_id"], "line": 1, "payment_id": older, "reason": "report"}
    chosen = client.post("/reconciliation/choices", json=choice, headers=auth("officer"))
    assert chosen.status_code == 200, chosen.text
    (link,) = chosen.json()["links"]
    assert (link["rule"], link["settled_day"]) == ("card_payout", days[1].isoformat())


def test_a_split_payout_two_settlement_days_make_is_chosen_over_http(client, services) -> None:
    days = _two_settlement_days_of_one_payout(services)
    split = camt(
        entry("50.00", ref="P1", text="GOVUK PAY"), entry("49.80", ref="P2", text="GOVUK PAY")
    )
    batch = _upload(client, "stmt.xml", split)["batch"]
    lines = client.get(f"/imports/{batch['batch_id']}", headers=auth("officer")).json()["lines"]
    assert [line["outcome"] for line in lines] == ["recorded", "recorded"]
    for line in lines:
        assert [(c["rule"], c["settled_day"]) for c in line["candidates"]] == [
            ("card_payout", day.isoformat()) for day in days
        ]
    older = lines[1]["candidates"][1]["payment_id"]
    choice = {"batch_id": batch["batch_id"], "line": 2, "payment_id": older, "reason": "report"}
    chosen = client.post("/reconciliation/choices", json=choice, headers=auth("officer"))
    assert chosen.status_code == 200, chosen.text
    assert [(link["line"], link["rule"]) for link in chosen.json()["links"]] == [
        (1, "card_payout"),
        (2, "card_payout_part"),
    ]
    report = client.get("/reconciliation/exceptions", headers=auth("reporting")).json()
    assert report["unmatched_statement_lines"] == []
    (left,) = report["unsettled_card_payments"]
    assert left["date"] == days[0].isoformat()


SECTIONS = (
    "unmatched_statement_lines",
    "unmatched_receipts",
    "unsettled_card_payments",
    "open_disputes",
)


def test_the_exceptions_report_is_paged_across_its_sections_and_csv_is_whole(client) -> None:
    for pence in (1_111, 2_222, 3_333):  # card payments at a till: receipts no line paid in
        card = client.post(
            "/payments",
            headers=auth("officer"),
            json={"channel": "card", "amount_pence": pence, "reference": "JUNK"},
        )
        assert card.status_code == 201, card.text
    _upload(client, "stmt.xml", camt(entry("25.00", ref="B1"), entry("26.00", ref="B2")))
    url = "/reconciliation/exceptions"
    whole = client.get(url, params={"limit": 500}, headers=auth("reporting")).json()
    rows = [(section, row) for section in SECTIONS for row in whole[section]]
    assert [section for section, _ in rows] == [SECTIONS[0]] * 2 + [SECTIONS[1]] * 3
    assert (whole["total"], whole["limit"], whole["offset"]) == (5, 500, 0)

    paged = []
    for offset in (0, 2, 4, 6):
        page = client.get(url, params={"limit": 2, "offset": offset}, headers=auth("officer"))
        assert page.status_code == 200, page.text
        body = page.json()
        assert (body["total"], body["limit"], body["offset"]) == (5, 2, offset)
        assert body["summary"] == whole["summary"], "the totals are the whole report's"
        paged.append([(section, row) for section in SECTIONS for row in body[section]])
    assert [len(page) for page in paged] == [2, 2, 1, 0]
    assert [row for page in paged for row in page] == rows, "the report's order, page by page"
    assert client.get(url, headers=auth("officer")).json()["limit"] == 100

    as_csv = client.get(url, params={"limit": 1}, headers=auth("auditor") | {"Accept": "text/csv"})
    assert len(as_csv.text.splitlines()) == 1 + 5, "CSV is the whole report"
    for wrong in ({"limit": 0}, {"limit": 501}, {"offset": -1}):
        assert client.get(url, params=wrong, headers=auth("officer")).status_code == 422


def test_a_page_of_a_report_changed_since_the_first_is_refused(client) -> None:
    """The report is made afresh on each call: a client that pages with the first page's
    `position` is told when the report changed between pages (rows shifted), instead of
    silently skipping or repeating rows."""
    for pence in (1_111, 2_222, 3_333):
        card = client.post(
            "/payments",
            headers=auth("officer"),
            json={"channel": "card", "amount_pence": pence, "reference": "JUNK"},
        )
        assert card.status_code == 201, card.text
    url = "/reconciliation/exceptions"
    first = client.get(url, params={"limit": 2}, headers=auth("officer")).json()
    at = first["position"]
    assert at > 0
    same = client.get(
        url, params={"limit": 2, "offset": 2, "at_position": at}, headers=auth("officer")
    )
    assert same.status_code == 200, same.text
    assert same.json()["position"] == at and len(same.json()["unmatched_receipts"]) == 1
    # Money recorded between pages: the rows move.
    client.post(
        "/payments",
        headers=auth("officer"),
        json={"channel": "card", "amount_pence": 4_444, "reference": "JUNK"},
    )
    changed = client.get(
        url, params={"limit": 2, "offset": 2, "at_position": at}, headers=auth("officer")
    )
    assert changed.status_code == 409, changed.text
    body = changed.json()
    assert body["code"] == "report_changed"
    assert "start again from the first page" in body["detail"]
    again = client.get(url, params={"limit": 2}, headers=auth("officer")).json()
    assert again["position"] > at and again["total"] == first["total"] + 1
    ok = client.get(
        url,
        params={"limit": 2, "offset": 2, "at_position": again["position"]},
        headers=auth("officer"),
    )
    assert ok.status_code == 200, ok.text
    params = {"at_position": -1}
    assert client.get(url, params=params, headers=auth("officer")).status_code == 422
    schema = client.get("/openapi.json").json()
    out = schema["components"]["schemas"]["ExceptionsOut"]
    assert "position" in out["properties"] and "position" in out["required"]
    (parameter,) = [
        p for p in schema["paths"][url]["get"]["parameters"] if p["name"] == "at_position"
    ]
    assert "409 report_changed" in parameter["description"]


def test_a_statement_whose_only_waiting_line_is_a_payout_debit_offers_it_over_http(
    client, services
) -> None:
    """GET /imports/{id} offers a payout debit's candidates, as the exceptions report does,
    when the statement's credit lines all found their payers."""
    from tests.application.test_choosing_statement_links import two_days_refunds

    paid, _ = two_days_refunds(services.ledger)
    debit = entry("60.00", ref="P2", debit=True, family="ICDT", text="GOVUK PAY")
    batch = _upload(client, "d.xml", camt(debit, entry("12.34", ref="B1", text=CT_REF)))["batch"]
    lines = client.get(f"/imports/{batch['batch_id']}", headers=auth("officer")).json()["lines"]
    report = client.get("/reconciliation/exceptions", headers=auth("reporting")).json()
    rows = report["unmatched_statement_lines"]
    # the credit a fund took by its payer's reference: in the import's view, not a report row
    assert [(row["kind"], row["line"]) for row in rows] == [("statement_debit", 1)]
    assert [line["candidates"] for line in lines] == [rows[0]["candidates"], []]
    assert [line["status"] for line in lines] == [None, "allocated"]
    assert sorted(c["payment_id"] for c in lines[0]["candidates"]) == paid


def test_a_statement_line_an_officer_allocated_leaves_the_report(client) -> None:
    """A line recorded in suspense that an officer then allocates in full is no exception
    (its allocation changes the report: a page at the old position is refused); a line
    allocated in part stays, in the JSON and the CSV."""
    statement = camt(entry("25.01", ref="B1", text="NO IDEA"), entry("25.02", ref="B2"))
    lines = upload_statement(client, statement)
    assert [line["status"] for line in lines] == ["suspense", "suspense"]
    url = "/reconciliation/exceptions"
    first = client.get(url, params={"limit": 1}, headers=auth("officer")).json()
    assert first["total"] == 2
    for line, pence in ((lines[0], 2_501), (lines[1], 1_000)):
        allocated = client.post(
            f"/payments/{line['payment_id']}/allocations",
            headers=auth("officer"),
            json={"lines": [{"fund_code": "CT", "reference": CT_REF, "amount_pence": pence}]},
        )
        assert allocated.status_code == 201, allocated.text
    changed = client.get(
        url,
        params={"limit": 1, "offset": 1, "at_position": first["position"]},
        headers=auth("officer"),
    )
    assert changed.status_code == 409 and changed.json()["code"] == "report_changed"
    report = client.get(url, headers=auth("officer")).json()
    assert [row["line"] for row in report["unmatched_statement_lines"]] == [2]
    assert report["total"] == 1
    csv_text = client.get(url, headers=auth("auditor") | {"Accept": "text/csv"}).text
    assert [row.split(",")[0] for row in csv_text.splitlines()[1:]] == ["statement_line"]
