"""Funds described as data from the command line: masks, check-digit schemes and groups."""

from __future__ import annotations

import json

import pytest

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


@pytest.mark.parametrize(
    ("definition", "said"),
    [
        (5, "must be a JSON object"),
        ([PCN2 | {"name": None}], "name must be text, got null"),
        ([PCN2 | {"enabled": "false"}], 'enabled must be true or false, got "false"'),
        ([PCN2 | {"vat_rate_basis_points": 12.7}], "must be a whole number"),
        ([PCN2 | {"ledger_code": ["R3011"]}], "ledger_code must be text"),
        ({"code": "PCN2"}, "lacks name, cost_centre, ledger_code, reference_rule"),
    ],
)
def test_a_fund_file_of_the_wrong_shape_says_what_to_fix_and_adds_nothing(
    cli, tmp_path, definition, said
) -> None:
    """These were a stack-trace-like message ('int' object is not subscriptable), or
    stored as something else: a fund named 'None', a disabled fund enabled, 12.7 as 12."""
    result = _add(cli, definition, tmp_path, code=2)
    assert said in result.output and "unexpected" not in result.output
    assert "PCN2" not in {f["code"] for f in as_json(cli("funds", "list", "--json"))}


def test_a_fund_file_that_is_not_utf8_says_so(cli, tmp_path) -> None:
    path = tmp_path / "fund.json"
    path.write_bytes(b"\xff\xfe" + json.dumps(PCN2).encode("utf-16-le"))
    result = cli("funds", "add", "--file", str(path), code=2)
    assert "not UTF-8 text" in result.output and "unexpected" not in result.output


def test_an_amendment_that_would_store_something_else_is_refused(cli) -> None:
    for change, said in (("name=null", "name must be text"), ("group=[1]", "group must be")):
        result = cli("funds", "amend", "CT", "--set", change, "--reason", "typo", code=2)
        assert said in result.output
    assert as_json(cli("funds", "show", "CT", "--json"))["name"] == "Council Tax"
    cli("funds", "amend", "CT", "--set", "ledger_code=1010", "--reason", "digits are text")
    assert as_json(cli("funds", "show", "CT", "--json"))["ledger_code"] == "1010"
