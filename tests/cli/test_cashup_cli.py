"""`income-ledger offices ...` and `cashup ...` as an office uses them, on both backends."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from domain.periods import uk_date
from income_ledger.cli import helpers
from tests.cli.test_cli import cli  # noqa: F401 - the fixture
from tests.domain.helpers import CT_REF

YESTERDAY = (uk_date(datetime.now(UTC)) - timedelta(days=1)).isoformat()


def test_configure_an_office_take_cash_count_it_and_approve(cli) -> None:  # noqa: F811
    cli(
        "offices",
        "add",
        "civic",
        "--name",
        "Civic Centre",
        "--channel",
        "cash",
        "--channel",
        "cheque",
    )
    cli("offices", "add-till", "CIVIC", "t1")
    listed = json.loads(cli("offices", "list", "--json").stdout)
    assert listed[0]["code"] == "CIVIC" and listed[0]["tills"][0]["code"] == "T1"
    cli(
        "payments",
        "record",
        "--channel",
        "cash",
        "--amount",
        "20.50",
        "--reference",
        CT_REF,
        "--received-at",
        f"{YESTERDAY}T12:00:00Z",
        "--office",
        "civic",
        "--till",
        "t1",
    )
    short = cli(
        "cashup", "submit", "CIVIC", "T1", YESTERDAY, "--bag", "B1", "--count", "20=1", code=2
    )
    assert "cash short by £0.50" in short.stderr and "[reason_required]" in short.stderr
    submitted = json.loads(
        cli(
            "cashup",
            "submit",
            "CIVIC",
            "T1",
            YESTERDAY,
            "--bag",
            "B1",
            "--count",
            "20=1",
            "--count",
            "50p=1",
            "--actor",
            "officer:olu",
            "--json",
        ).stdout
    )
    assert submitted["lines"][0]["difference_pence"] == 0
    own = cli("cashup", "approve", submitted["cashup_id"], "--actor", "officer:olu", code=2)
    assert "[second_person_required]" in own.stderr
    approved = cli("cashup", "approve", submitted["cashup_id"], "--actor", "supervisor:sue")
    assert "approved" in approved.stdout and "balanced" in approved.stdout
    listed = json.loads(cli("cashup", "list", "--status", "approved", "--json").stdout)
    assert [c["cashup_id"] for c in listed] == [submitted["cashup_id"]]
    # Its history says when in UK local time, as the other commands do; --json stays ISO UTC.
    history = json.loads(cli("cashup", "show", submitted["cashup_id"], "--json").stdout)["history"]
    shown = cli("cashup", "show", submitted["cashup_id"]).stdout
    for step in history:
        assert datetime.fromisoformat(step["at"]).utcoffset() == timedelta(0)
        assert helpers.uk_time(step["at"]) in shown
    assert not re.search(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d", shown), shown


def test_a_cash_up_for_a_day_before_the_till_was_added_is_refused(cli) -> None:  # noqa: F811
    cli("offices", "add", "civic", "--name", "Civic Centre", "--channel", "cash")
    cli("offices", "add-till", "CIVIC", "t1")
    refused = cli(
        "cashup", "submit", "CIVIC", "T1", "2026-03-31", "--bag", "B1", "--count", "20=1", code=2
    )
    said = " ".join(refused.stderr.split())
    assert "the cash-up date 2026-03-31 is before till T1 of office CIVIC was added" in said
    assert "check the date and the till" in said, said
    assert json.loads(cli("cashup", "list", "--json").stdout) in ([], {"cashups": []})
