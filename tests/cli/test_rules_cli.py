"""`income-ledger rules ...` as a supervisor and a script use it, on both backends."""

from __future__ import annotations

import json

from tests.application.test_imports import allpay_file, allpay_line
from tests.cli.test_cli import cli  # noqa: F401 - the fixture
from tests.domain.helpers import CT_REF


def test_add_list_move_disable_and_an_import_decided_by_a_rule(cli, tmp_path) -> None:  # noqa: F811
    added = cli(
        "rules",
        "add",
        "--name",
        "CT prefix",
        "--reference",
        "CT[0-9]{8}",
        "--fund",
        "ct",
        "--strip-prefix",
        "CT",
        "--reason",
        "Allpay sends a prefix",
    )
    assert "added rule R1 v1 (CT prefix), tried 1" in added.stdout
    big = cli(
        "rules",
        "add",
        "--name",
        "large",
        "--min-amount",
        "500.00",
        "--channel",
        "allpay",
        "--suspense",
        "check large sums",
        "--reason",
        "policy",
        "--json",
    )
    assert json.loads(big.stdout)["rule"]["min_amount_pence"] == 50_000
    cli("rules", "move", "R2", "--to", "1", "--reason", "large first")
    listed = json.loads(cli("rules", "list", "--json").stdout)
    assert [rule["rule_id"] for rule in listed["rules"]] == ["R2", "R1"]
    table = cli("rules", "list").stdout
    assert "R2 v1" in table and "large" in table

    path = tmp_path / "day.txt"
    path.write_bytes(allpay_file(allpay_line(f"CT{CT_REF}", "20.00")))
    batch = json.loads(cli("import", str(path), "--json").stdout)["batch"]
    assert batch["receipts_pence"] == 2_000
    bad = cli(
        "rules",
        "add",
        "--name",
        "x",
        "--reference",
        "(A+)+",
        "--fund",
        "CT",
        "--reason",
        "x",
        code=2,
    )
    assert "repeat inside a repeat" in bad.stderr
    disabled = cli("rules", "disable", "R1", "--reason", "gone")
    assert "disabled rule R1 v2" in disabled.stdout
    again = cli("rules", "disable", "R1", "--reason", "gone")
    assert "nothing to do" in again.stdout
    cli("rules", "disable", "R7", "--reason", "x", code=2)


def test_the_progress_bar_shows_only_for_a_person_at_a_terminal(monkeypatch) -> None:
    from income_ledger.cli import helpers
    from income_ledger.cli.imports import import_progress

    with import_progress(show=False) as bar:
        assert bar is None
    with import_progress(show=True) as bar:  # stderr is not a terminal here
        assert bar is None
    monkeypatch.setattr(helpers.err, "_force_terminal", True)
    with import_progress(show=False) as bar:  # --json
        assert bar is None
    with import_progress(show=True) as bar:
        assert bar is not None
        bar("checking lines", 500, 1000)


def test_amend_a_rule_and_a_refused_amendment(cli) -> None:  # noqa: F811
    cli(
        "rules", "add", "--name", "CT", "--reference", "CT[0-9]{8}", "--fund", "CT", "--reason", "r"
    )
    done = cli("rules", "amend", "R1", "--reference", "CX[0-9]{8}", "--reason", "new prefix")
    assert "amended rule R1 v2 (CT), tried 1: reference matches CX[0-9]{8} -> fund CT" in (
        done.stdout
    )
    held = json.loads(
        cli("rules", "amend", "R1", "--suspense", "hold", "--reason", "r", "--json").stdout
    )
    assert held["rule"]["fund_code"] is None and held["rule"]["suspense_reason"] == "hold"
    refused = cli("rules", "amend", "R1", "--reference", "(A+)+", "--reason", "r", code=2)
    assert "unbounded time" in refused.stderr
    missing = cli("rules", "amend", "R7", "--name", "x", "--reason", "r", code=2)
    assert "no import rule 'R7'" in missing.stderr


def test_amend_clears_a_condition(cli) -> None:  # noqa: F811
    cli(
        "rules", "add", "--name", "CT", "--reference", "CT[0-9]{8}", "--narrative", "COUNCIL",
        "--min-amount", "1.00", "--channel", "bank_transfer", "--fund", "CT", "--reason", "r",
    )  # fmt: skip
    done = cli(
        "rules", "amend", "R1", "--clear", "narrative", "--clear", "channel",
        "--clear", "min-amount", "--reason", "any narrative, any channel", "--json",
    )  # fmt: skip
    rule = json.loads(done.stdout)["rule"]
    assert (rule["narrative_contains"], rule["channels"], rule["min_amount_pence"]) == (
        None,
        [],
        None,
    )
    assert (rule["reference_pattern"], rule["version"]) == ("CT[0-9]{8}", 2)
    both = cli("rules", "amend", "R1", "--clear", "reference", "--reference", "CT.*",
               "--reason", "r", code=2)  # fmt: skip
    assert "--clear reference and a new value for it were both given" in both.stderr
    unknown = cli("rules", "amend", "R1", "--clear", "fund", "--reason", "r", code=2)
    assert "'fund' is not one of" in unknown.stderr
