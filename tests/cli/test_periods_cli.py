"""`income-ledger periods ...` and `gl ...` as a supervisor uses them, on both backends."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from datetime import datetime, timedelta

import pytest
from rich.console import Console

from income_ledger.cli import helpers, periods
from tests.cli.test_cli import cli  # noqa: F401 - the fixture
from tests.domain.helpers import CT_REF


def test_close_a_month_then_money_dated_in_it_is_refused_and_named(cli) -> None:  # noqa: F811
    cli(
        "payments",
        "record",
        "--channel",
        "cash",
        "--amount",
        "10.00",
        "--reference",
        CT_REF,
        "--received-at",
        "2025-02-10T10:00:00Z",
    )
    closed = json.loads(
        cli(
            "periods",
            "close",
            "month",
            "2025-02-14",
            "--reason",
            "Feb signed off",
            "--json",
            "--actor",
            "supervisor:sue",
        ).stdout
    )
    assert closed["period"] == "2025-02" and closed["last_day"] == "2025-02-28"
    refused = cli(
        "payments",
        "record",
        "--channel",
        "cash",
        "--amount",
        "5.00",
        "--reference",
        CT_REF,
        "--received-at",
        "2025-02-20T10:00:00Z",
        code=2,
    )
    assert "month 2025-02" in refused.stderr and "[period_closed]" in refused.stderr
    late = json.loads(
        cli(
            "payments",
            "record",
            "--channel",
            "cash",
            "--amount",
            "5.00",
            "--reference",
            CT_REF,
            "--relates-to-period",
            "2025-02",
            "--json",
        ).stdout
    )
    assert late["payment"]["provider_details"] == {"relates_to_period": "2025-02"}
    again = cli("periods", "close", "day", "2025-02-03", "--reason", "x", code=2)
    assert "already closed" in again.stderr
    listed = json.loads(cli("periods", "list", "--json").stdout)
    assert [c["period"] for c in listed] == ["2025-02"]
    assert "2025-02" in cli("periods", "list").stdout
    assert (
        "unknown period"
        in cli("periods", "close", "week", "2025-02-03", "--reason", "x", code=2).stderr
    )


def test_gl_export_writes_the_same_file_every_time(cli, tmp_path) -> None:  # noqa: F811
    cli(
        "payments",
        "record",
        "--channel",
        "cash",
        "--amount",
        "10.00",
        "--reference",
        CT_REF,
        "--received-at",
        "2025-03-10T10:00:00Z",
    )
    out = tmp_path / "gl.csv"
    first = cli("gl", "export", "2025-03-10", "--out", str(out))
    assert "exported 2025-03-10: 2 lines" in first.stderr
    content = out.read_bytes()
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert [(r["account_role"], r["gl_code"], r["amount_pence"]) for r in rows] == [
        ("cash", "CASH", "1000"),
        ("income", "R1010", "-1000"),
    ]
    again = cli("gl", "export", "2025-03-10")
    assert again.stdout_bytes == content and "the same file" in again.stderr
    listed = json.loads(cli("gl", "list", "--json").stdout)
    assert listed[0]["export_date"] == "2025-03-10" and listed[0]["lines_count"] == 2
    assert "the day '10/03/2025' is not a date: write it like 2026-03-31" in (
        cli("gl", "export", "10/03/2025", code=2).stderr
    )
    exported_at = listed[0]["exported_at"]
    assert datetime.fromisoformat(exported_at).utcoffset() == timedelta(0)  # --json: ISO UTC
    said = cli("gl", "list").stdout
    assert "UTC" not in said and "exported at" in said
    assert all(part in said for part in helpers.uk_time(exported_at).split())


def test_periods_list_says_when_in_uk_time_and_json_stays_iso(cli) -> None:  # noqa: F811
    cli("periods", "close", "month", "2025-02-14", "--reason", "Feb signed off")
    (close,) = json.loads(cli("periods", "list", "--json").stdout)
    assert datetime.fromisoformat(close["closed_at"]).utcoffset() == timedelta(0)
    said = cli("periods", "list").stdout
    assert "UTC" not in said and "closed at" in said
    # The table's narrow column may fold the time: each of its parts is there.
    assert all(part in said for part in helpers.uk_time(close["closed_at"]).split())


# Moments either side of the clocks changing (01:00 UTC on 29 March and 25 October 2026), and
# a summer evening in UTC that is already the next day in the UK.
AROUND_BST = [
    ("2026-03-29T00:30:00+00:00", "29 Mar 2026 00:30 GMT"),
    ("2026-03-29T01:30:00+00:00", "29 Mar 2026 02:30 BST"),
    ("2026-06-30T23:30:00+00:00", "1 Jul 2026 00:30 BST"),
    ("2026-10-25T00:30:00+00:00", "25 Oct 2026 01:30 BST"),
    ("2026-10-25T01:30:00+00:00", "25 Oct 2026 01:30 GMT"),
]


@pytest.mark.parametrize(("moment", "uk"), AROUND_BST)
def test_closes_and_exports_show_uk_local_time_around_the_clock_changes(
    monkeypatch, moment, uk
) -> None:
    printed = io.StringIO()
    monkeypatch.setattr(helpers, "out", Console(file=printed, width=200, emoji=False))
    close = {
        "period": "2026-03",
        "kind": "month",
        "first_day": "2026-03-01",
        "last_day": "2026-03-31",
        "closed_by": "supervisor:sue",
        "closed_at": moment,
        "reason": "signed off",
    }
    export = {
        "export_date": "2026-03-28",
        "lines_count": 2,
        "exported_by": "supervisor:sue",
        "exported_at": moment,
        "closed_period": None,
        "sha256": "ab" * 32,
    }
    periods._print_closes([close])
    periods._print_exports([export])
    said = printed.getvalue()
    assert said.count(uk) == 2, said
    assert "UTC" not in said and moment[:16].replace("T", " ") not in said


def test_a_gl_file_that_cannot_be_written_records_no_export(cli, tmp_path) -> None:  # noqa: F811
    """The export used to be recorded (who, when, its hash) before the file was written, so
    a mistyped folder left a recorded export of a journal nobody received."""
    folder = tmp_path / "journals"
    folder.mkdir()
    for out in (folder / "no" / "such" / "gl.csv", folder):
        refused = cli("gl", "export", "2025-03-10", "--out", str(out), code=2)
        assert str(out) in refused.stderr and "unexpected" not in refused.stderr
    assert json.loads(cli("gl", "list", "--json").stdout) == []
    existing = folder / "gl.csv"
    existing.write_text("the previous journal\n")
    cli("gl", "export", "2025-03-10", "--out", str(existing))
    assert existing.read_bytes() == cli("gl", "export", "2025-03-10").stdout_bytes
    assert [p.name for p in folder.iterdir()] == ["gl.csv"]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert existing.stat().st_mode & 0o777 == 0o666 & ~umask  # as a file written in place
    assert len(json.loads(cli("gl", "list", "--json").stdout)) == 1


def test_a_gl_file_that_cannot_replace_the_old_one_says_the_export_is_recorded(
    cli,  # noqa: F811
    tmp_path,
) -> None:
    """A file that cannot be put in place once the export is recorded (here an existing
    file made immutable, which even root cannot replace; a full disk is the same path) was
    'unexpected OSError' (exit 70). It says what failed, that the export is recorded and
    how to get the file (the same bytes again), leaves the old file whole and no temporary."""
    if shutil.which("chattr") is None or os.geteuid() != 0:
        pytest.skip("needs chattr and root to make a file nobody can replace")
    folder = tmp_path / "journals"
    folder.mkdir()
    existing = folder / "gl.csv"
    existing.write_text("the previous journal\n")
    if subprocess.run(["chattr", "+i", str(existing)], check=False).returncode != 0:
        pytest.skip("this filesystem has no immutable files")
    try:
        refused = cli("gl", "export", "2025-03-10", "--out", str(existing), code=2)
    finally:
        subprocess.run(["chattr", "-i", str(existing)], check=True)
    assert "unexpected" not in refused.stderr, refused.stderr
    assert f"cannot write {existing}" in refused.stderr
    assert "recorded" in refused.stderr and "again" in refused.stderr
    assert existing.read_text() == "the previous journal\n"
    assert [p.name for p in folder.iterdir()] == ["gl.csv"]
    assert len(json.loads(cli("gl", "list", "--json").stdout)) == 1
    cli("gl", "export", "2025-03-10", "--out", str(existing))
    assert existing.read_bytes() == cli("gl", "export", "2025-03-10").stdout_bytes
