"""Refund approval on the command line: the same rule as HTTP, with approve and decline."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from income_ledger.cli import app
from income_ledger.cli.helpers import uk_time
from tests.domain.helpers import CT_REF


@pytest.fixture
def cli(database_url, monkeypatch):
    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    monkeypatch.setenv("LEDGER_REFUND_APPROVAL_LIMIT_PENCE", "1000")
    runner = CliRunner()

    def run(*args: str, actor: str = "officer:a", code: int = 0):
        result = runner.invoke(app, [*args], env={"LEDGER_ACTOR": actor})
        assert result.exit_code == code, result.output
        return result

    run("db", "init")
    run("funds", "add", "--sample")
    return run


def test_refunds_above_the_limit_wait_for_a_second_person(cli) -> None:
    made = cli("payments", "record", "--channel", "cash", "--amount", "50", "--reference", CT_REF)
    pid = made.stdout.split()[2]
    small = cli("payments", "refund", pid, "--amount", "6", "--reason", "overpaid")
    assert "refunded on payment" in small.stdout
    split = cli("payments", "refund", pid, "--amount", "6", "--reason", "overpaid", "--json")
    waiting = json.loads(split.stdout)
    assert waiting["refund"] == "waiting_for_approval"
    assert waiting["payment"]["refunded_pence"] == 600
    request_id = waiting["refund_request_id"]
    shown = cli("payments", "show", pid).stdout
    assert f"refund waiting for approval: request {request_id}" in shown
    listed = json.loads(cli("payments", "pending-refunds", "--json").stdout)
    assert [(p["payment_id"], p["request_id"]) for p in listed] == [(pid, request_id)]
    own = cli("payments", "approve-refund", pid, request_id, code=2)
    assert "[second_person_required]" in own.output
    approved = cli("payments", "approve-refund", pid, request_id, actor="supervisor:b")
    assert "approved and paid" in approved.stdout and "refunded £12.00" in approved.stdout
    late = cli("payments", "decline-refund", pid, request_id, "--reason", "no", code=2)
    assert "already approved by supervisor:b" in late.output
    assert "no refunds wait" in cli("payments", "pending-refunds").stdout


def test_a_request_can_be_declined_with_a_reason(cli) -> None:
    made = cli("payments", "record", "--channel", "cash", "--amount", "50", "--reference", CT_REF)
    pid = made.stdout.split()[2]
    waiting = cli("payments", "refund", pid, "--amount", "20", "--reason", "overpaid")
    assert "waiting for approval" in waiting.stdout
    request_id = waiting.stdout.split("approve-refund")[1].split()[1].rstrip("`")
    cli("payments", "decline-refund", pid, request_id, "--reason", "not owed", actor="sup:b")
    shown = json.loads(cli("payments", "show", pid, "--json").stdout)
    assert shown["pending_refunds"] == [] and shown["refunded_pence"] == 0
    assert shown["history"][-1]["action"] == "RefundDeclined"


def test_a_vat_rate_change_can_be_dated_on_the_command_line(cli) -> None:
    cli(
        "funds",
        "amend",
        "SUN",
        "--set",
        "vat_rate_basis_points=0",
        "--vat-rate-effective-from",
        "2027-04-01",
        "--reason",
        "zero-rated from April",
    )
    shown = json.loads(cli("funds", "show", "SUN", "--json").stdout)
    assert shown["vat_rates"][-1] == {
        "effective_from": "2027-03-31T23:00:00+00:00",  # midnight in London (BST)
        "vat_rate_basis_points": 0,
    }


def test_a_payment_and_a_waiting_refund_say_when_in_uk_local_time(cli) -> None:
    """Received at 23:30 UTC on 30 June is 00:30 BST on 1 July for the person reading it;
    --json keeps the ISO UTC instants."""
    made = cli(
        "payments",
        "record",
        "--channel",
        "cash",
        "--amount",
        "50",
        "--reference",
        CT_REF,
        "--received-at",
        "2026-06-30T23:30:00Z",
    )
    assert "received 1 Jul 2026 00:30 BST" in made.stdout
    pid = made.stdout.split()[2]
    cli("payments", "refund", pid, "--amount", "20", "--reason", "overpaid")
    payment = json.loads(cli("payments", "show", pid, "--json").stdout)
    assert payment["received_at"] == "2026-06-30T23:30:00+00:00"
    shown = cli("payments", "show", pid).stdout
    assert "received 1 Jul 2026 00:30 BST" in shown
    # The history table may fold a time in its narrow column: each of its parts is there.
    for entry in payment["history"]:
        assert all(part in shown for part in uk_time(entry["recorded_at"]).split()), shown
    (waiting,) = json.loads(cli("payments", "pending-refunds", "--json").stdout)
    listed = cli("payments", "pending-refunds").stdout
    assert all(part in listed for part in uk_time(waiting["requested_at"]).split()), listed
    for said in (made.stdout, shown, listed):
        assert not re.search(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d", said), said
        assert "+00:00" not in said
