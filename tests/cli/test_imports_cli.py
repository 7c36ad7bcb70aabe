"""`income-ledger import ...` as a person and a script use it, on both backends."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from domain.limits import uk_today
from income_ledger.cli import helpers
from tests.application.test_imports import (
    STATEMENTS,
    TOTALS_MISMATCH,
    TWO_RECORDS,
    allpay_file,
    allpay_line,
    csv_file,
    needs_samples,
)
from tests.cli.test_cli import cli  # noqa: F401 - the fixture
from tests.domain.helpers import CT_REF, SUN_REF


@needs_samples
def test_import_the_real_file_then_again_then_the_refused_one(cli) -> None:  # noqa: F811
    path = str(STATEMENTS / TWO_RECORDS)
    first = json.loads(cli("import", path, "--format", "allpay", "--json").stdout)
    assert first["recorded"] and first["batch"]["receipts_pence"] == 12_000
    assert first["batch"]["imported_by"] == "officer:cli"
    again = cli("import", path)
    assert "already imported" in again.stdout and "nothing recorded" in again.stdout
    refused = cli("import", str(STATEMENTS / TOTALS_MISMATCH), code=2)
    assert "refused whole" in refused.stderr
    assert "trailer total 419.00 does not match the lines, which add up to 60.00" in refused.stderr


def test_a_refused_file_names_each_line_and_json_says_so(cli, tmp_path) -> None:  # noqa: F811
    path = tmp_path / "be0101.txt"
    path.write_bytes(allpay_file(allpay_line(CT_REF, "1.00")[:40], total="0.00", count=1))
    refused = cli("import", str(path), "--json", code=2)
    problems = json.loads(refused.stdout)["problems"]
    assert problems[0]["line"] == 1 and "at least 43 characters" in problems[0]["reason"]
    assert "line 1: a detail line must be" in refused.stderr


def test_csv_needs_its_control_totals(cli, tmp_path) -> None:  # noqa: F811
    day = (uk_today() - timedelta(days=1)).isoformat()
    path = tmp_path / "day.csv"
    path.write_bytes(csv_file(f"cash,12.50,{CT_REF},{day},,", f"cheque,2.50,{SUN_REF},{day},,"))
    missing = cli("import", str(path), code=2)
    assert "--expect-total" in missing.stderr
    wrong = cli("import", str(path), "--expect-total", "15.01", "--expect-count", "2", code=2)
    assert "expected total 15.01 does not match" in wrong.stderr
    done = cli("import", str(path), "--expect-total", "15.00", "--expect-count", "2")
    assert "2 receipts, £15.00" in done.stdout


def test_list_and_reverse_an_import(cli, tmp_path) -> None:  # noqa: F811
    path = tmp_path / "be0102.txt"
    path.write_bytes(allpay_file(allpay_line(CT_REF, "8.00")))
    batch_id = json.loads(cli("import", str(path), "--json").stdout)["batch"]["batch_id"]
    listed = json.loads(cli("import", "list", "--json").stdout)
    assert [b["batch_id"] for b in listed] == [batch_id]
    assert "be0102.txt" in cli("import", "list").stdout
    cli("import", "reverse", batch_id, code=2)  # --reason is required
    done = cli("import", "reverse", batch_id, "--reason", "sent twice under two names")
    assert "£8.00 of its receipts reversed" in done.stdout
    again = cli("import", "reverse", batch_id, "--reason", "again", code=2)
    assert "already reversed" in again.stderr
    cli("import", "reverse", "not-a-uuid", "--reason", "x", code=2)
    unreadable = cli("import", str(tmp_path / "missing.txt"), code=2)
    assert "cannot read" in unreadable.stderr


def test_a_file_whose_name_says_another_format_is_refused_saying_why_it_was_read_so(
    cli,  # noqa: F811
    tmp_path,
) -> None:
    """A .csv without the CSV header row was refused with Allpay's complaints alone (no
    trailer, short detail lines), which named nothing the person had meant."""
    for name, said in (("day.csv", "'channel,'"), ("statement.xml", "XML, starting with '<'")):
        path = tmp_path / name
        path.write_text("amount,reference\n12.50,12345679\n")
        refused = cli("import", str(path), code=2)
        assert f"read as allpay from how it starts, though its name ends {path.suffix}" in (
            refused.output
        )
        assert said in refused.output and "trailer" in refused.output
    allpay_named_txt = tmp_path / "day.txt"
    allpay_named_txt.write_text("amount,reference\n")
    assert "from how it starts" not in cli("import", str(allpay_named_txt), code=2).output
    assert json.loads(cli("import", "list", "--json").stdout) == []


@needs_samples
def test_import_show_says_why_a_line_went_to_suspense(cli, tmp_path) -> None:  # noqa: F811
    """A fresh user's be0630.txt: lines 1-2 in suspense, and nothing said why."""
    path = tmp_path / "be0630.txt"
    path.write_bytes((STATEMENTS / TWO_RECORDS).read_bytes())
    batch_id = json.loads(cli("import", str(path), "--json").stdout)["batch"]["batch_id"]
    shown = cli("import", "show", batch_id).stdout
    assert shown.count("suspense (no matching") == 2 and shown.count("fund)") == 2, shown
    lines = json.loads(cli("import", "show", batch_id, "--json").stdout)["lines"]
    assert [line["suspense_reason"] for line in lines] == ["no_matching_fund"] * 2


def test_a_copy_with_other_line_endings_is_already_imported(cli, tmp_path) -> None:  # noqa: F811
    day = (uk_today() - timedelta(days=1)).isoformat()
    content = csv_file(f"cash,12.50,{CT_REF},{day},,")
    totals = ("--expect-total", "12.50", "--expect-count", "1")
    original, copy = tmp_path / "day.csv", tmp_path / "day-crlf.csv"
    original.write_bytes(content)
    copy.write_bytes(content.replace(b"\n", b"\r\n") + b"\r\n")
    first = json.loads(cli("import", str(original), *totals, "--json").stdout)
    assert first["recorded"]
    again = cli("import", str(copy), *totals)
    assert "already imported: day.csv" in again.stdout and "nothing recorded" in again.stdout
    assert first["batch"]["batch_id"] in again.stdout
    assert len(json.loads(cli("import", "list", "--json").stdout)) == 1


def test_a_reversed_import_and_a_copy_of_it_are_answered_as_reversed(cli, tmp_path) -> None:  # noqa: F811
    """A reversed import's file, or a copy of it saved otherwise, records nothing (issue #10:
    its content is claimed for good); the answer said "already imported" alone, and a person
    took the day's income as counted while its receipts stood reversed."""
    path, copy = tmp_path / "be0104.txt", tmp_path / "be0104-copy.txt"
    content = allpay_file(allpay_line(CT_REF, "8.00"))
    path.write_bytes(content)
    copy.write_bytes(b"\xef\xbb\xbf" + content.replace(b"\r\n", b"\n") + b"  \n")
    batch_id = json.loads(cli("import", str(path), "--json").stdout)["batch"]["batch_id"]
    cli("import", "reverse", batch_id, "--reason", "the wrong day's file", "--actor", "sup:x")
    for again in (cli("import", str(path)), cli("import", str(copy))):
        said = " ".join(again.stdout.split())
        assert f"already imported: be0104.txt (batch {batch_id}" in said, said
        assert "since reversed by sup:x (the wrong day's file): its receipts do not count" in said
        assert said.endswith("; nothing recorded"), said
    assert len(json.loads(cli("import", "list", "--json").stdout)) == 1


def test_import_times_read_as_uk_local_times_and_json_stays_iso(cli, tmp_path) -> None:  # noqa: F811
    """`import list` said "(UTC)" and a second import printed a raw ISO instant, while
    `import show` said GMT: a person reads UK local time everywhere, --json reads ISO."""
    path = tmp_path / "be0103.txt"
    path.write_bytes(allpay_file(allpay_line(CT_REF, "8.00")))
    batch = json.loads(cli("import", str(path), "--json").stdout)["batch"]
    imported_at = batch["imported_at"]
    assert datetime.fromisoformat(imported_at).utcoffset() == timedelta(0)
    shown = helpers.uk_time(imported_at)
    assert shown.endswith((" GMT", " BST"))
    listed = cli("import", "list").stdout
    again = cli("import", str(path)).stdout
    show = cli("import", "show", batch["batch_id"]).stdout
    for said in (listed, again, show):
        assert "UTC" not in said and "+00:00" not in said, said
    # The list's narrow column may fold the time: each of its parts is there.
    assert all(part in listed for part in shown.split())
    assert shown in " ".join(again.split()) and shown in show
    assert json.loads(cli("import", "list", "--json").stdout)[0]["imported_at"] == imported_at
