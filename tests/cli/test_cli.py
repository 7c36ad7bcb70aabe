"""The command line as a person and a script use it, on both backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from application.ledger import CommandContext, RecordPayment
from income_ledger.bootstrap import build_ledger
from tests.conftest import cli_invoker
from tests.domain.helpers import CT_REF, SUN_REF


@pytest.fixture
def cli(database_url, monkeypatch):
    run = cli_invoker(monkeypatch, database_url, actor="officer:cli")
    run("db", "init")
    run("funds", "add", "--sample")
    return run


def as_json(result) -> dict:
    return json.loads(result.stdout)


def test_record_allocate_refund_and_show(cli) -> None:
    recorded = as_json(
        cli(
            "payments",
            "record",
            "--channel",
            "cash",
            "--amount",
            "50.00",
            "--reference",
            "junk",
            "--json",
        )
    )
    pid = recorded["payment"]["payment_id"]
    assert recorded["payment"]["status"] == "suspense" and recorded["position"] > 0
    allocated = as_json(
        cli(
            "payments",
            "allocate",
            pid,
            "--line",
            f"CT:{CT_REF}:30",
            "--line",
            f"SUN:{SUN_REF}:20.00",
            "--json",
        )
    )
    assert allocated["payment"]["status"] == "allocated"
    cli(
        "payments",
        "refund",
        pid,
        "--amount",
        "5",
        "--reason",
        "overpaid",
        "--from",
        f"SUN:{SUN_REF}",
    )
    cli(
        "payments",
        "transfer",
        pid,
        "--from",
        f"CT:{CT_REF}",
        "--to",
        "HRA:1234569",
        "--amount",
        "10",
        "--reason",
        "wrong account",
    )
    shown = as_json(cli("payments", "show", pid, "--json"))
    assert [h["actor"] for h in shown["history"]][1:] == ["officer:cli"] * 3
    assert shown["refunded_pence"] == 500
    human = cli("payments", "show", pid).stdout
    assert "Transferred" in human and "wrong account" in human
    cli("payments", "note", pid, "phoned")  # a note's words are its point: shown as its why
    assert "phoned" in cli("payments", "show", pid).stdout


def test_a_person_reads_pounds_with_thousands_separators_a_script_reads_pence(cli) -> None:
    recorded = as_json(
        cli("payments", "record", "--channel", "cash", "--amount", "14809.19", "--json")
    )
    assert recorded["payment"]["amount_pence"] == 1_480_919
    human = cli("payments", "show", recorded["payment"]["payment_id"]).stdout
    assert "cash £14,809.19" in human and "unallocated £14,809.19" in human
    assert "14809.19" not in human


def test_bad_input_gets_a_clear_message_and_a_non_zero_exit(cli) -> None:
    result = cli("payments", "record", "--channel", "cash", "--amount", "12.5x", code=2)
    assert "write it like 12.50" in result.output and "Traceback" not in result.output
    result = cli("payments", "record", "--channel", "pigeon", "--amount", "1", code=2)
    assert "unknown channel" in result.output
    pid = as_json(cli("payments", "record", "--channel", "cash", "--amount", "1", "--json"))[
        "payment"
    ]["payment_id"]
    result = cli("payments", "allocate", pid, "--line", f"CT:{CT_REF}:2", code=2)
    # Amounts on the command line are pounds, and so are the amounts its refusals name.
    assert "allocating £2.00 but only £1.00 of this payment is unallocated" in result.output
    result = cli("payments", "record", "--channel", "cash", "--amount", "-5", code=2)
    assert "the amount must be more than zero, got -£5.00" in result.output
    result = cli("payments", "allocate", pid, "--line", f"CT:{CT_REF}:1")
    result = cli(
        "payments",
        "transfer",
        pid,
        "--from",
        f"CT:{CT_REF}",
        "--to",
        "HRA:1234569",
        "--amount",
        "1.50",
        "--reason",
        "wrong account",
        code=2,
    )
    assert "transferring £1.50 but only £1.00 is allocated to CT" in result.output
    result = cli("payments", "refund", pid, "--amount", "2", "--reason", "overpaid", code=2)
    assert "refunding £2.00 but only £1.00 remains" in result.output
    assert "pence" not in result.output
    assert "not a payment id" in cli("payments", "show", "nope", code=2).output
    assert (
        "no payment"
        in cli("payments", "show", "00000000-0000-0000-0000-000000000000", code=2).output
    )


def test_funds_list_and_show(cli) -> None:
    funds = as_json(cli("funds", "list", "--json"))
    assert {f["code"] for f in funds} >= {"CT", "NNDR", "HRA", "PCN", "SUN", "BOP"}
    cli("funds", "disable", "BOP", "--reason", "closed")
    assert as_json(cli("funds", "show", "BOP", "--json"))["enabled"] is False
    assert "Council Tax" in cli("funds", "list").stdout


def test_demo_fills_a_ledger_that_balances(cli) -> None:
    result = as_json(cli("demo", "--days", "2", "--receipts-per-day", "40", "--json"))
    assert result["demo"]["receipts"] == 80
    assert result["summary"]["trial_balance_pence"] == 0
    assert result["summary"]["suspense_pence"] > 0
    again = as_json(cli("demo", "--days", "2", "--receipts-per-day", "40", "--json"))
    assert again["summary"]["events"] == result["summary"]["events"]


def test_an_uninitialised_database_says_what_to_run(tmp_path) -> None:
    env = {"LEDGER_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}", "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-m", "income_ledger.cli", "funds", "list"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert "income-ledger db init" in result.stderr and "Traceback" not in result.stderr


def test_adding_funds_from_a_file_is_all_or_nothing(cli, tmp_path) -> None:
    licensing = {
        "code": "LIC",
        "name": "Licensing",
        "cost_centre": "L1",
        "ledger_code": "R9",
        "reference_rule": {"min_length": 6, "max_length": 6, "pattern": "LI[0-9]{4}"},
    }
    council_tax = dict(licensing, code="CT", name="Council Tax again")
    definitions = tmp_path / "funds.json"
    definitions.write_text(json.dumps([licensing, council_tax]))
    refused = cli("funds", "add", "--file", str(definitions), code=2)
    assert "fund CT already exists" in refused.output
    assert "LIC" not in {f["code"] for f in as_json(cli("funds", "list", "--json"))}
    definitions.write_text(json.dumps([licensing]))
    assert "added funds: LIC" in cli("funds", "add", "--file", str(definitions)).stdout


def test_show_prints_what_the_payment_provider_reported(cli, settings) -> None:
    ledger = build_ledger(settings)
    outcome = ledger.record_payment(
        RecordPayment(
            "govuk_pay",
            4_000,
            CT_REF,
            external_id="pay_details",
            external_id_from_provider=True,
            provider_details={"fee_pence": 200, "captured_date": "2024-11-04"},
        ),
        CommandContext("integration:govuk-pay"),
    )
    ledger.close()
    shown = cli("payments", "show", str(outcome.payment_id)).stdout
    assert "provider: fee_pence 200, captured_date 2024-11-04" in shown
    as_data = as_json(cli("payments", "show", str(outcome.payment_id), "--json"))
    assert as_data["provider_details"] == {"fee_pence": 200, "captured_date": "2024-11-04"}


def test_the_first_project_on_a_fresh_database_applies_nothing_and_exits_0(database_url) -> None:
    """A new user's first steps, each its own process: `db init`, then `project --once`.

    On a fresh SQLite file the projector used to meet the event store switching the file to
    WAL under its own write lock, and exit 70 with "database is locked".
    """
    env = {"LEDGER_DATABASE_URL": database_url}
    for command in (["db", "init"], ["project", "--once"]):
        done = subprocess.run(
            [sys.executable, "-m", "income_ledger.cli", *command],
            env=os.environ | env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr


def test_the_serving_banner_prints_each_url_and_command_whole_in_a_narrow_terminal(
    monkeypatch,
) -> None:
    """`make run` on an 80-column terminal cut the 'try: curl ...' line and the docs URL with
    line breaks of its own: a command copied from the screen was two broken commands."""
    import io

    from rich.console import Console

    from income_ledger.cli import commands
    from income_ledger.server import demo_api_keys

    screen = io.StringIO()
    monkeypatch.setattr(commands, "out", Console(file=screen, width=40, emoji=False))
    keys = demo_api_keys()
    commands.print_serving_banner("http://127.0.0.1:8000", keys)
    lines = screen.getvalue().splitlines()
    officer = next(k for k in keys.split(",") if ":officer:" in k).split(":", 2)[2]
    assert (
        f"try: curl -s -H 'Authorization: Bearer {officer}' http://127.0.0.1:8000/balances/funds"
        in lines
    )
    docs = (
        "income-ledger API on http://127.0.0.1:8000 - documentation at http://127.0.0.1:8000/docs"
    )
    assert docs in lines
