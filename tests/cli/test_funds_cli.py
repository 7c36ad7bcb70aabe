"""Funds described as data from the command line: masks, check-digit schemes and groups."""

from __future__ import annotations

import json

from tests.cli import test_cli
from tests.cli.test_cli import as_json

cli = test_cli.cli  # the fixture: a CLI on a fresh ledger of either backend

PCN2 = {
    "code": "PCN2",
    "name": "PCNs (new)",
    "cost_centre": "P3000",
    "ledger_code": "R3011",
    "group": "PARKING",
    "reference_rule": {
        "mask": "AA9999999X",
        "check_digit": {
            "modulus": 11,
            "weights": [2, 3, 4, 5, 6, 7, 8, 9],
            "prefix_substitutions": [["BJ", "05"]],
            "ten_as": "X",
        },
    },
}


def _add(cli, definition: dict, tmp_path, code: int = 0):
    path = tmp_path / "fund.json"
    path.write_text(json.dumps(definition))
    return cli("funds", "add", "--file", str(path), code=code)


def test_a_council_describes_a_scheme_and_tries_references_against_it(cli, tmp_path) -> None:
    _add(cli, PCN2, tmp_path)
    shown = as_json(cli("funds", "show", "PCN2", "--json"))
    assert shown["group"] == "PARKING"
    assert shown["reference_rule"]["mask"] == "AA9999999X"
    valid = as_json(cli("funds", "check-reference", "PCN2", "bj 12345678", "--json"))
    assert valid["problem"] is None and valid["reference"] == "BJ12345678"
    wrong = cli("funds", "check-reference", "PCN2", "BJ12345670", code=1)
    assert "check_digit: expected 8" in wrong.output
    assert "counting BJ as 05" in wrong.output
    pattern = as_json(cli("funds", "check-reference", "PCN2", "B112345678", "--json", code=1))
    assert pattern["problem"] == "pattern" and pattern["expected_check_character"] is None
    # Receipts with the reference now find the new fund.
    recorded = as_json(
        cli(
            "payments", "record", "--channel", "cash", "--amount", "70.00",
            "--reference", "BJ12345678", "--json",
        )
    )  # fmt: skip
    assert [a["fund_code"] for a in recorded["payment"]["allocations"]] == ["PCN2"]


def test_a_scheme_that_cannot_work_is_refused_with_what_to_fix(cli, tmp_path) -> None:
    broken = json.loads(json.dumps(PCN2))
    broken["reference_rule"]["check_digit"]["modulus"] = 23
    refused = _add(cli, broken, tmp_path, code=2)
    assert "modulus 23 scheme needs check_characters" in refused.output
    broken["reference_rule"]["check_digit"]["check_characters"] = "ABC"
    refused = _add(cli, broken, tmp_path, code=2)
    assert "check_characters must give 24 characters" in refused.output
    both = json.loads(json.dumps(PCN2))
    both["reference_rule"]["pattern"] = "[A-Z]{2}[0-9]{8}"
    refused = _add(cli, both, tmp_path, code=2)
    assert "give the mask alone" in refused.output
    listed = as_json(cli("funds", "list", "--json"))
    assert "PCN2" not in {fund["code"] for fund in listed}


def test_a_funds_group_can_be_changed(cli) -> None:
    cli("funds", "amend", "HRA", "--set", "group=RENTS", "--reason", "rents team formed")
    assert as_json(cli("funds", "show", "HRA", "--json"))["group"] == "RENTS"
    refused = cli("funds", "amend", "HRA", "--set", "group=rents team", "--reason", "x", code=2)
    assert "fund group 'rents team' must be 1-16 capital letters" in refused.output
