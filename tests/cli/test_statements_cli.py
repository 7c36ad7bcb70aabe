"""`income-ledger import` of bank statements and `reconcile exceptions`, on both backends."""

from __future__ import annotations

import json
from datetime import timedelta

from fastapi.testclient import TestClient

from api.app import create_app
from income_ledger.bootstrap import build_ledger
from income_ledger.cli import helpers
from income_ledger.server import build_services
from income_ledger.settings import Settings
from tests.api.conftest import KEYS, auth
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_statement_imports import TODAY, bai2, camt, entry, mt940
from tests.cli.test_cli import cli  # noqa: F401 - the fixture
from tests.domain.helpers import CT_REF


def test_import_a_statement_detected_then_the_exceptions_report(cli, tmp_path) -> None:  # noqa: F811
    path = tmp_path / "stmt.xml"
    path.write_bytes(camt(entry("25.00", ref="B1")))
    done = json.loads(cli("import", str(path), "--json").stdout)
    assert done["batch"]["file_format"] == "camt053" and done["batch"]["receipts_pence"] == 2_500
    report = json.loads(cli("reconcile", "exceptions", "--json").stdout)
    assert [row["amount_pence"] for row in report["unmatched_statement_lines"]] == [2_500]
    table = cli("reconcile", "exceptions")
    assert "statement line" in table.stdout and "0-3 days: 1, £25.00" in table.stdout
    as_csv = cli("reconcile", "exceptions", "--csv").stdout.splitlines()
    assert as_csv[0].startswith("kind,age_band") and ",25.00,bank_transfer," in as_csv[1]


def test_an_explicit_format_and_a_refused_statement(cli, tmp_path) -> None:  # noqa: F811
    path = tmp_path / "day.sta"
    path.write_bytes(mt940(("C", "12,50", "REF1")))
    done = cli("import", str(path), "--format", "mt940")
    assert "1 receipt, £12.50" in done.stdout
    bad = tmp_path / "bad.xml"
    bad.write_bytes(camt(entry("25.00", ref="B1"), closing="1.00"))
    refused = cli("import", str(bad), code=2)
    assert "does not reconcile" in refused.stderr
    empty = cli("reconcile", "exceptions")
    assert "statement line" in empty.stdout


def _statement_then_allpay(tmp_path):
    statement = tmp_path / "stmt.xml"
    statement.write_bytes(camt(entry("7.00", ref="B1", text="ALLPAY LTD")))
    allpay = tmp_path / "be.txt"
    allpay.write_bytes(allpay_file(allpay_line(CT_REF, "3.00"), allpay_line(CT_REF, "4.00")))
    return statement, allpay


def test_importing_the_allpay_file_after_the_statement_links_it(cli, tmp_path) -> None:  # noqa: F811
    statement, allpay = _statement_then_allpay(tmp_path)
    cli("import", str(statement))
    done = cli("import", str(allpay))
    assert "imported be.txt" in done.stdout
    assert "linked stmt.xml line 1 (£7.00) to the total of import" in done.stdout
    assert json.loads(cli("reconcile", "link", "--json").stdout) == []
    report = json.loads(cli("reconcile", "exceptions", "--json").stdout)
    assert report["unmatched_statement_lines"] == [] and report["unmatched_receipts"] == []


def test_reconcile_link_after_a_late_allpay_file(cli, tmp_path, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setenv("LEDGER_AUTO_LINK_STATEMENTS", "false")
    statement, allpay = _statement_then_allpay(tmp_path)
    cli("import", str(statement))
    imported = json.loads(cli("import", str(allpay), "--json").stdout)
    assert imported["late_links"] == []
    done = cli("reconcile", "link")
    assert "linked stmt.xml line 1 (£7.00) to the total of import" in done.stdout
    assert "reversed as counted twice" in done.stdout
    assert json.loads(cli("reconcile", "link", "--json").stdout) == []
    report = json.loads(cli("reconcile", "exceptions", "--json").stdout)
    assert report["unmatched_statement_lines"] == [] and report["unmatched_receipts"] == []


def test_reconcile_unlink_undoes_a_wrong_link(cli, tmp_path) -> None:  # noqa: F811
    statement = tmp_path / "stmt.xml"
    statement.write_bytes(camt(entry("7.00", ref="B1", text="ALLPAY LTD")))
    allpay = tmp_path / "be.txt"
    allpay.write_bytes(allpay_file(allpay_line(CT_REF, "3.00"), allpay_line(CT_REF, "4.00")))
    batch_id = json.loads(cli("import", str(statement), "--json").stdout)["batch"]["batch_id"]
    (link,) = json.loads(cli("import", str(allpay), "--json").stdout)["late_links"]
    done = cli("reconcile", "unlink", batch_id, "1", "--reason", "a payer's transfer")
    assert "unlinked stmt.xml line 1 from the total of import" in done.stdout
    assert f"its receipt {link['reversed_payment_id']} is counted again" in done.stdout
    refused = cli("reconcile", "unlink", batch_id, "1", "--reason", "again", code=2)
    assert "its link was undone already" in refused.stderr
    assert "not a batch id" in cli("reconcile", "unlink", "x", "1", "--reason", "r", code=2).stderr
    assert json.loads(cli("reconcile", "link", "--json").stdout) == []
    report = json.loads(cli("reconcile", "exceptions", "--json").stdout)
    assert [row["line"] for row in report["unmatched_statement_lines"]] == [1]
    assert "both --batch and --line" in cli("reconcile", "link", "--line", "1", code=2).stderr
    again = cli("reconcile", "link", "--batch", batch_id, "--line", "1")
    assert "linked stmt.xml line 1 (£7.00) to the total of import" in again.stdout


def test_import_show_a_statement_with_a_reconciled_line_and_an_undone_link(
    cli,  # noqa: F811
    tmp_path,
    database_url,
    monkeypatch,
) -> None:
    monkeypatch.setattr(helpers.out, "_width", 200)  # a table row on one line
    _, later = _statement_then_allpay(tmp_path)
    first = tmp_path / "be1.txt"
    first.write_bytes(allpay_file(allpay_line(CT_REF, "5.00")))
    statement = tmp_path / "stmt.xml"
    statement.write_bytes(
        camt(entry("5.00", ref="B0", text="ALLPAY LTD"), entry("7.00", ref="B1", text="ALLPAY LTD"))
    )
    allpay_id = json.loads(cli("import", str(first), "--json").stdout)["batch"]["batch_id"]
    allpay_shown = cli("import", "show", allpay_id).stdout.splitlines()
    (allpay_row,) = [row for row in allpay_shown if row.startswith("│ ")]
    assert "│ allocated " in allpay_row and "│ CT " in allpay_row
    batch_id = json.loads(cli("import", str(statement), "--json").stdout)["batch"]["batch_id"]
    cli("import", str(later))  # links line 2 after the import
    cli("reconcile", "unlink", batch_id, "2", "--reason", "a payer's own transfer")

    shown = cli("import", "show", batch_id).stdout
    assert f"import {batch_id}" in shown and "stmt.xml (camt053)" in shown
    assert "by officer:cli" in shown and ("GMT" in shown or "BST" in shown)
    assert "2 lines, £12.00" in shown and "standing (not reversed)" in shown
    rows = [row for row in shown.splitlines() if row.startswith("│ ")]
    assert "reconciled" in rows[0] and "£5.00" in rows[0] and "match: one receipt" in rows[0]
    assert "pays in allpay receipt of" in rows[0]
    assert "suspense (provider payout; link undone)" in rows[1] and "£7.00" in rows[1]
    assert "undone: was the total of import" in rows[1]

    as_json = json.loads(cli("import", "show", batch_id, "--json").stdout)
    with build_ledger(Settings(database_url=database_url)) as ledger:
        services = build_services(Settings(database_url=database_url), ledger, KEYS)
        with TestClient(create_app(services)) as client:
            answer = client.get(f"/imports/{batch_id}", headers=auth("officer"))
        services.read_engine.dispose()
    assert answer.status_code == 200 and as_json == answer.json()
    (undone,) = as_json["lines"][1]["undone_links"]
    assert undone["rule"] == "import_total" and as_json["lines"][1]["late_link"] is None
    assert as_json["lines"][0]["outcome"] == "reconciled"

    cli("import", "reverse", batch_id, "--reason", "sent by mistake")
    assert "reversed by officer:cli: sent by mistake" in cli("import", "show", batch_id).stdout
    assert cli("import", "show", "48", code=2).stderr.count("not a batch id (a UUID)") == 1
    unknown = cli("import", "show", "00000000-0000-0000-0000-000000000000", code=2)
    assert "no import with id" in unknown.stderr and "Traceback" not in unknown.output


def test_a_line_with_two_candidates_is_shown_and_a_person_chooses(cli, tmp_path) -> None:  # noqa: F811
    files = []
    for name, amounts in (("be1.txt", ("3.00", "4.00")), ("be2.txt", ("2.00", "5.00"))):
        path = tmp_path / name
        path.write_bytes(allpay_file(*(allpay_line(CT_REF, a) for a in amounts)))
        files.append(json.loads(cli("import", str(path), "--json").stdout)["batch"]["batch_id"])
    statement = tmp_path / "stmt.xml"
    statement.write_bytes(camt(entry("7.00", ref="B1", text="ALLPAY LTD")))
    batch_id = json.loads(cli("import", str(statement), "--json").stdout)["batch"]["batch_id"]
    report = json.loads(cli("reconcile", "exceptions", "--json").stdout)
    (row,) = report["unmatched_statement_lines"]
    assert {c["matched_batch_id"] for c in row["candidates"]} == set(files)
    table = cli("reconcile", "exceptions").stdout
    assert f"line 1 of import {batch_id} (£7.00) needs a person" in table
    assert f"reconcile choose {batch_id} 1 --candidate KEY" in table
    shown = cli("import", "show", batch_id).stdout
    assert "needs a person" in shown
    refused = cli("reconcile", "link", "--batch", batch_id, "--line", "1", code=2)
    assert "a person chooses which (reconcile choose)" in refused.stderr
    second = next(c for c in row["candidates"] if c["matched_batch_id"] == files[1])
    wrong = cli("reconcile", "choose", batch_id, "1", "--receipt", "nope", "--reason", "r", code=2)
    assert "is not among what line 1" in wrong.stderr
    done = cli(
        "reconcile",
        "choose",
        batch_id,
        "1",
        "--receipt",
        second["payment_ids"][0],
        "--reason",
        "the remittance said be2",
    )
    assert f"linked stmt.xml line 1 (£7.00) to the total of import {files[1]}" in done.stdout
    assert (
        json.loads(cli("reconcile", "exceptions", "--json").stdout)["unmatched_statement_lines"]
        == []
    )


def test_one_of_three_pairs_of_files_is_chosen_by_its_candidate_key(cli, tmp_path) -> None:  # noqa: F811
    """Three files of 5.00 on three days and a line of 10.00: three pairs, each file in two,
    so no receipt names one; `reconcile choose --candidate KEY` does. Neither or both of
    --candidate and --receipt is refused (exit 2), storing nothing."""
    files = []
    for days_before in (3, 2, 1):
        day = (TODAY - timedelta(days=days_before)).strftime("%d/%m/%Y")
        path = tmp_path / f"allpay-{days_before}.txt"
        path.write_bytes(allpay_file(allpay_line(CT_REF, "5.00", day=day)))
        files.append(json.loads(cli("import", str(path), "--json").stdout)["batch"]["batch_id"])
    statement = tmp_path / "monday.xml"
    statement.write_bytes(camt(entry("10.00", ref="B1", text="ALLPAY LTD")))
    batch_id = json.loads(cli("import", str(statement), "--json").stdout)["batch"]["batch_id"]
    (row,) = json.loads(cli("reconcile", "exceptions", "--json").stdout)[
        "unmatched_statement_lines"
    ]
    keys = [c["candidate"] for c in row["candidates"]]
    assert len(set(keys)) == 3 and [c["payment_id"] for c in row["candidates"]] == [None] * 3
    table = cli("reconcile", "exceptions").stdout
    assert all(f"candidate {key})" in table for key in keys)
    assert f"reconcile choose {batch_id} 1 --candidate KEY" in table
    neither = cli("reconcile", "choose", batch_id, "1", "--reason", "r", code=2)
    assert "not neither" in neither.stderr and "Traceback" not in neither.output
    receipt = row["candidates"][0]["payment_ids"][0]
    both = ("--candidate", keys[0], "--receipt", receipt)
    assert (
        "not both"
        in cli("reconcile", "choose", batch_id, "1", *both, "--reason", "r", code=2).stderr
    )
    done = cli(
        "reconcile", "choose", batch_id, "1", "--candidate", keys[1], "--reason", "Fri and Sun"
    )
    assert "linked monday.xml line 1 (£10.00)" in done.stdout
    (line,) = json.loads(cli("import", "show", batch_id, "--json").stdout)["lines"]
    assert line["late_link"]["matched_batch_ids"] == [files[0], files[2]]


def test_two_lines_of_one_amount_both_wait_and_a_person_links_one(cli, tmp_path) -> None:  # noqa: F811
    allpay = tmp_path / "be.txt"
    allpay.write_bytes(allpay_file(allpay_line(CT_REF, "7.00")))
    cli("import", str(allpay))
    statement = tmp_path / "stmt.xml"
    statement.write_bytes(
        camt(entry("7.00", ref="B1", text="ALLPAY LTD"), entry("7.00", ref="B2", text="ALLPAY"))
    )
    batch_id = json.loads(cli("import", str(statement), "--json").stdout)["batch"]["batch_id"]
    report = json.loads(cli("reconcile", "exceptions", "--json").stdout)
    rows = report["unmatched_statement_lines"]
    ((receipt,), (same,)) = [[c["payment_id"] for c in row["candidates"]] for row in rows]
    assert receipt == same
    assert cli("import", "show", batch_id).stdout.count("needs a person") == 2
    refused = cli("reconcile", "link", "--batch", batch_id, "--line", "2", code=2)
    assert "another statement line may pay in the same" in refused.stderr
    assert "line_needs_a_choice" in refused.stderr
    cli("reconcile", "choose", batch_id, "2", "--receipt", receipt, "--reason", "the slip")
    (left,) = json.loads(cli("reconcile", "exceptions", "--json").stdout)[
        "unmatched_statement_lines"
    ]
    assert (left["line"], left["candidates"]) == (1, [])
    assert "needs a person" not in cli("import", "show", batch_id).stdout


def _record(cli, amount: str, channel: str = "cash") -> dict:  # noqa: F811
    done = cli("payments", "record", "--channel", channel, "--amount", amount, "--json")
    return json.loads(done.stdout)


def test_cash_keyed_after_its_deposit_line_is_linked_by_payments_record(cli, tmp_path) -> None:  # noqa: F811
    # The deposit reached the bank (and the statement the ledger) before the till's
    # receipts were keyed in: the second receipt makes the cash day add up to the line.
    statement = tmp_path / "stmt.xml"
    statement.write_bytes(camt(entry("30.00", ref="D1", text="CASH DEPOSIT CIVIC")))
    line_receipt = json.loads(cli("import", str(statement), "--json").stdout)
    assert line_receipt["late_links"] == []
    assert _record(cli, "10.00")["late_links"] == []
    second = _record(cli, "20.00")
    (link,) = second["late_links"]
    assert link["line"] == 1 and link["rule"] == "channel_day_total"
    assert second["payment"]["payment_id"] in link["matched_payment_ids"]
    shown = cli("payments", "record", "--channel", "cheque", "--amount", "1.00")
    assert "linked" not in shown.stdout  # nothing waits for a cheque of £1.00
    report = json.loads(cli("reconcile", "exceptions", "--json").stdout)
    assert report["unmatched_statement_lines"] == []
    assert [row["amount_pence"] for row in report["unmatched_receipts"]] == [100]


def test_payments_record_links_nothing_a_person_must_choose(cli, tmp_path) -> None:  # noqa: F811
    # Two deposit lines of one amount and one receipt of it: either link would be a guess.
    statement = tmp_path / "stmt.xml"
    statement.write_bytes(
        camt(entry("15.00", ref="D1", text="CASH DEPOSIT"), entry("15.00", ref="D2", text="CASH"))
    )
    cli("import", str(statement))
    recorded = _record(cli, "15.00")
    assert recorded["late_links"] == []
    report = json.loads(cli("reconcile", "exceptions", "--json").stdout)
    waiting = report["unmatched_statement_lines"]
    assert len(waiting) == 2
    for row in waiting:
        (candidate,) = row["candidates"]
        assert candidate["payment_id"] == recorded["payment"]["payment_id"]


def test_payments_record_links_nothing_when_automatic_linking_is_off(
    cli,  # noqa: F811
    tmp_path,
    monkeypatch,
) -> None:
    monkeypatch.setenv("LEDGER_AUTO_LINK_STATEMENTS", "false")
    statement = tmp_path / "stmt.xml"
    statement.write_bytes(camt(entry("12.00", ref="D1", text="CASH DEPOSIT")))
    cli("import", str(statement))
    assert _record(cli, "12.00")["late_links"] == []
    done = cli("reconcile", "link")
    assert "linked stmt.xml line 1 (£12.00) to cash receipt of" in done.stdout


def test_a_broken_bai2_or_mt940_file_is_refused_naming_the_line_to_fix(cli, tmp_path) -> None:  # noqa: F811
    bad_bai2 = tmp_path / "day.bai2"
    bad_bai2.write_bytes(bai2(amount="x12"))
    refused = cli("import", str(bad_bai2), code=2)
    assert "line 4 (record 16, a transaction): the amount 'x12' is not a whole number of pence" in (
        refused.stderr
    )
    assert "Traceback" not in refused.output
    rows = mt940(("C", "12,50", "REF1")).decode().split("\r\n")
    rows[4] = rows[4][:6] + "13" + rows[4][8:]
    bad_mt940 = tmp_path / "day.sta"
    bad_mt940.write_bytes("\r\n".join(rows).encode())
    refused = cli("import", str(bad_mt940), code=2)
    assert "line 5 (field :61:, a statement line): a date in it is not a real date" in (
        refused.stderr
    )
    assert "Traceback" not in refused.output
    rows[4] = ":61:XX"
    bad_mt940.write_bytes("\r\n".join(rows).encode())
    refused = cli("import", str(bad_mt940), code=2)
    assert "line 5 (field :61:, a statement line): the field is not written" in refused.stderr
    assert json.loads(cli("import", "list", "--json").stdout) == []
    good = tmp_path / "good.bai2"
    good.write_bytes(bai2())
    assert "1 receipt, £12.50" in cli("import", str(good)).stdout


def test_an_empty_report_does_not_say_a_payers_own_transfer_was_matched(cli, tmp_path) -> None:  # noqa: F811
    """A statement whose one line a fund took by its payer's reference: no exception, but
    the line pays in no other record, so the empty report must not say it was matched."""
    path = tmp_path / "own.xml"
    path.write_bytes(camt(entry("12.34", ref="B1", text=CT_REF)))
    cli("import", str(path))
    report = json.loads(cli("reconcile", "exceptions", "--json").stdout)
    assert report["unmatched_statement_lines"] == [] and report["summary"] == []
    said = " ".join(cli("reconcile", "exceptions").stdout.split())
    assert "is matched" not in said
    assert "no exceptions" in said and "a payer's own transfer a fund took" in said


def test_reconcile_check_and_uncheck_a_line_an_import_rule_sent_to_a_fund(cli, tmp_path) -> None:  # noqa: F811
    cli(
        "rules",
        "add",
        "--name",
        "till deposits",
        "--narrative",
        "TILL DEPOSIT",
        "--fund",
        "CT",
        "--rewrite",
        "[A-Z ]+",
        "--rewrite-to",
        CT_REF,
        "--reason",
        "the counter's cash goes to council tax",
    )
    statement = tmp_path / "stmt.xml"
    statement.write_bytes(camt(entry("13.00", ref="B1", text="TILL DEPOSIT")))
    batch_id = json.loads(cli("import", str(statement), "--json").stdout)["batch"]["batch_id"]
    report = json.loads(cli("reconcile", "exceptions", "--json").stdout)
    assert [row["line"] for row in report["unmatched_statement_lines"]] == [1]
    done = cli("reconcile", "check", batch_id, "1", "--reason", "the till's slip matches")
    assert "stmt.xml line 1 (£13.00) checked: it is off the exceptions report" in done.stdout
    report = json.loads(cli("reconcile", "exceptions", "--json").stdout)
    assert report["unmatched_statement_lines"] == []
    (line,) = json.loads(cli("import", "show", batch_id, "--json").stdout)["lines"]
    assert line["checked"]["reason"] == "the till's slip matches"
    assert "checked" in cli("import", "show", batch_id).stdout
    refused = cli("reconcile", "check", batch_id, "1", "--reason", "again", code=2)
    assert "checked already" in refused.stderr
    undone = json.loads(
        cli("reconcile", "uncheck", batch_id, "1", "--reason", "wrong day", "--json").stdout
    )
    assert undone["checked"] is False
    report = json.loads(cli("reconcile", "exceptions", "--json").stdout)
    assert [row["line"] for row in report["unmatched_statement_lines"]] == [1]


def test_reconcile_provider_lines_lists_what_a_fund_took(cli, tmp_path, monkeypatch) -> None:  # noqa: F811
    statement = tmp_path / "stmt.xml"
    statement.write_bytes(camt(entry("13.00", ref="B1", text=CT_REF, info="WORLDPAY LTD")))
    cli("import", str(statement))
    assert json.loads(cli("reconcile", "provider-lines", "--json").stdout)["total"] == 0
    monkeypatch.setenv("LEDGER_COLLECTOR_NARRATIVES", "ALLPAY,PAYPOINT,PAYZONE,WORLDPAY")
    found = json.loads(cli("reconcile", "provider-lines", "--json").stdout)
    assert found["total"] == 1 and found["lines"][0]["narrative"] == "WORLDPAY LTD"
    table = cli("reconcile", "provider-lines").stdout
    assert "1 statement line a fund took names a provider" in table


def test_import_show_says_a_return_downloaded_again_reversed_nothing(
    cli,  # noqa: F811
    tmp_path,
    monkeypatch,
) -> None:
    monkeypatch.setattr(helpers.out, "_width", 200)  # a table row on one line
    collected = tmp_path / "mon.xml"
    collected.write_bytes(
        camt(entry("40.00", ref="D1", family="RDDT", day=TODAY - timedelta(days=1)))
    )
    cli("import", str(collected))
    returned = camt(
        entry("40.00", ref="R1", family="RDDT", debit=True, reversal=True, reason="AC06"),
        opening="1040.00",
    )
    first, again = tmp_path / "tue.xml", tmp_path / "tue-again.xml"
    first.write_bytes(returned)
    again.write_bytes(returned.replace(b"<MsgId>M1</MsgId>", b"<MsgId>M2</MsgId>"))
    cli("import", str(first))
    batch_id = json.loads(cli("import", str(again), "--json").stdout)["batch"]["batch_id"]
    rows = [row for row in cli("import", "show", batch_id).stdout.splitlines() if "│ " in row]
    assert any("returned before (nothing reversed)" in row for row in rows)
    (line,) = json.loads(cli("import", "show", batch_id, "--json").stdout)["lines"]
    assert line["outcome"] == "known" and line["kind"] == "direct_debit_return"
