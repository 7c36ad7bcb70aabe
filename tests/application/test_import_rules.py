"""Import rules applied by imports, on SQLite and PostgreSQL: the rule that decided each
receipt is recorded with it, built-in matching still decides what no rule does."""

from __future__ import annotations

import pytest

from application.import_rules import add_rule, amend_rule, disable_rule, list_rules, move_rule
from application.imports import get_import, import_file
from application.ledger import CommandContext
from domain.errors import ImportRuleNotFound, InvalidImportRule, UnknownFund
from tests.application.test_imports import allpay_file, allpay_line
from tests.domain.helpers import CT_REF, CT_REF_2

SUPERVISOR = CommandContext("supervisor:rules")
CT_PREFIXED = {"name": "CT prefix", "reference_pattern": "CT[0-9]{8}", "fund_code": "CT"}


def imported(ledger, officer, *lines: str) -> list[dict]:
    outcome = import_file(ledger, allpay_file(*lines), officer, file_name="day.txt")
    entries = get_import(ledger, outcome.batch_id)["lines"]
    return [ledger.get_payment(entry["payment_id"]) | {"line": entry} for entry in entries]


def test_rules_decide_first_and_every_allocation_says_which_rule(ledger, officer) -> None:
    add_rule(ledger, CT_PREFIXED | {"strip_prefix": "CT"}, SUPERVISOR, "CT files carry a prefix")
    big = {"name": "large cash", "min_amount_pence": 50_000, "suspense_reason": "check it"}
    add_rule(ledger, big, SUPERVISOR, "large sums are checked", position=1)
    payments = imported(
        ledger,
        officer,
        allpay_line(f"CT{CT_REF}", "25.00"),  # R1 rewrites it to a valid CT reference
        allpay_line(f"CT{CT_REF_2}", "600.00"),  # R2 first: suspense
        allpay_line(CT_REF, "5.00"),  # no rule: the funds' reference rules, as before
    )
    by_rule, large, built_in = payments
    assert by_rule["status"] == "allocated" and by_rule["reference"] == CT_REF
    assert by_rule["allocations"][0]["fund_code"] == "CT"
    assert by_rule["import_rule"] == {
        "rule_id": "R1",
        "rule_version": 1,
        "rulebook_version": 3,
        "rule_name": "CT prefix",
        "file_reference": f"CT{CT_REF}",
    }
    allocated = [e for e in by_rule["history"] if e["action"] == "Allocated"]
    assert allocated[0]["details"]["import_rule"]["rule_id"] == "R1"
    assert allocated[0]["reason"].startswith("import rule R1 v1 (CT prefix)")
    assert by_rule["line"]["import_rule"]["rule_id"] == "R1"
    assert large["status"] == "suspense" and large["suspense_reason"] == "import_rule"
    assert large["import_rule"]["rule_id"] == "R2" and large["reference"] == f"CT{CT_REF_2}"
    assert built_in["status"] == "allocated" and built_in["import_rule"] is None


def test_a_disabled_rule_no_longer_decides_and_the_version_is_recorded(ledger, officer) -> None:
    add_rule(ledger, CT_PREFIXED | {"strip_prefix": "CT"}, SUPERVISOR, "prefix")
    add_rule(
        ledger,
        CT_PREFIXED | {"name": "to suspense", "fund_code": None, "suspense_reason": "held"},
        SUPERVISOR,
        "hold",
    )
    disable_rule(ledger, "R1", SUPERVISOR, "the prefix is gone")
    (payment,) = imported(ledger, officer, allpay_line(f"CT{CT_REF}", "1.00"))
    assert payment["import_rule"]["rule_id"] == "R2" and payment["status"] == "suspense"
    move_rule(ledger, "R2", 1, SUPERVISOR, "order")
    listed = list_rules(ledger)
    assert [(r["rule_id"], r["order"], r["enabled"], r["version"]) for r in listed["rules"]] == [
        ("R2", 1, True, 1),
        ("R1", 2, False, 2),
    ]


def test_returned_cheques_find_a_receipt_whose_reference_a_rule_rewrote(ledger, officer) -> None:
    add_rule(ledger, CT_PREFIXED | {"strip_prefix": "CT"}, SUPERVISOR, "prefix")
    imported(ledger, officer, allpay_line(f"CT{CT_REF}", "40.00"))
    (returned,) = imported(ledger, officer, allpay_line(f"CT{CT_REF}", "40.00", "Q"))
    assert returned["status"] == "reversed" and returned["import_rule"]["rule_id"] == "R1"


def test_changes_are_checked_and_nothing_partial_is_saved(ledger) -> None:
    before = ledger.max_position()
    with pytest.raises(UnknownFund):
        add_rule(ledger, CT_PREFIXED | {"fund_code": "NOPE"}, SUPERVISOR, "x")
    with pytest.raises(InvalidImportRule):
        add_rule(ledger, CT_PREFIXED | {"reference_pattern": "(CT+)+"}, SUPERVISOR, "x")
    with pytest.raises(ImportRuleNotFound):
        disable_rule(ledger, "R1", SUPERVISOR, "x")
    assert ledger.max_position() == before
    assert list_rules(ledger) == {"rulebook_version": 0, "rules": []}
    repeat = add_rule(ledger, CT_PREFIXED, SUPERVISOR, "x")
    assert repeat["recorded"] and repeat["rule"]["rule_id"] == "R1"
    again = disable_rule(ledger, "R1", SUPERVISOR, "x")
    assert again["recorded"]
    assert not disable_rule(ledger, "r1", SUPERVISOR, "x")["recorded"]


def test_a_long_import_reports_its_progress(ledger, officer) -> None:
    seen: list[tuple[str, int, int | None]] = []
    lines = [allpay_line(CT_REF, "1.00", source=f"{n:06d}") for n in range(1200)]
    content = allpay_file(*lines)
    import_file(ledger, content, officer, file_name="long.txt", progress=lambda *a: seen.append(a))
    stages = [stage for stage, _, _ in seen]
    assert stages[0] == "reading the file" and stages[-1] == "saved"
    checking = [(done, total) for stage, done, total in seen if stage == "checking lines"]
    assert checking == [(0, 1200), (500, 1200), (1000, 1200), (1200, 1200)]
    assert seen[-1] == ("saved", 1200, 1200)


def test_an_amended_rule_keeps_its_place_and_history_and_decides_anew(ledger, officer) -> None:
    add_rule(ledger, CT_PREFIXED | {"strip_prefix": "CT"}, SUPERVISOR, "prefix")
    add_rule(
        ledger,
        {"name": "big", "min_amount_pence": 900_00, "suspense_reason": "x"},
        SUPERVISOR,
        "big",
    )
    before = ledger.max_position()
    amended = amend_rule(
        ledger, "r1", {"reference_pattern": "CX[0-9]{8}"}, SUPERVISOR, "Allpay changed prefix"
    )
    assert amended["recorded"] and amended["rule"]["order"] == 1
    assert amended["rule"]["version"] == 2 and amended["rule"]["fund_code"] == "CT"
    assert amended["rule"]["strip_prefix"] == "CT"  # not given: kept
    (payment,) = imported(ledger, officer, allpay_line(f"CX{CT_REF}", "25.00"))
    assert payment["import_rule"]["rule_version"] == 2
    assert payment["status"] == "suspense"  # CT stripped from CX...: an invalid reference
    # A suspense outcome replaces the fund outcome whole.
    held = amend_rule(ledger, "R1", {"suspense_reason": "hold CX"}, SUPERVISOR, "hold them")
    assert held["rule"]["fund_code"] is None and held["rule"]["strip_prefix"] is None
    assert [r["rule_id"] for r in list_rules(ledger)["rules"]] == ["R1", "R2"]
    again = amend_rule(ledger, "R1", {"suspense_reason": "hold CX"}, SUPERVISOR, "same")
    assert not again["recorded"] and again["rule"]["version"] == 3
    events = [e for p, e in ledger.read_events() if p > before]
    assert [type(e).__name__ for e in events if "Rule" in type(e).__name__] == [
        "RuleAmended",
        "RuleAmended",
    ]


def test_an_amendment_is_refused_whole_when_the_rule_or_the_change_is_wrong(ledger) -> None:
    add_rule(ledger, CT_PREFIXED, SUPERVISOR, "prefix")
    position = ledger.max_position()
    with pytest.raises(ImportRuleNotFound):
        amend_rule(ledger, "R9", {"name": "x"}, SUPERVISOR, "no such rule")
    with pytest.raises(InvalidImportRule, match="not a valid regular expression"):
        amend_rule(ledger, "R1", {"reference_pattern": "CT[0-9"}, SUPERVISOR, "bad")
    with pytest.raises(InvalidImportRule, match="unbounded time"):
        amend_rule(ledger, "R1", {"reference_pattern": "(A+)+"}, SUPERVISOR, "slow")
    with pytest.raises(UnknownFund):
        amend_rule(ledger, "R1", {"fund_code": "NOPE"}, SUPERVISOR, "no such fund")
    with pytest.raises(InvalidImportRule, match="cannot be amended"):
        amend_rule(ledger, "R1", {"enabled": False}, SUPERVISOR, "use disable")
    assert ledger.max_position() == position
    assert list_rules(ledger)["rules"][0]["version"] == 1


def test_a_file_whose_reference_a_rule_makes_too_long_is_refused_naming_the_rule(
    ledger, officer
) -> None:
    from datetime import timedelta

    from domain.limits import uk_today
    from tests.application.test_imports import csv_file, refusal

    doubled = {
        "name": "doubled",
        "reference_pattern": "A+",
        "fund_code": "CT",
        "rewrite_pattern": "^A+$",
        "rewrite_to": r"\g<0>" * 20,
    }
    add_rule(ledger, doubled, SUPERVISOR, "a mistake")
    day = (uk_today() - timedelta(days=1)).isoformat()
    content = csv_file(f"cash,1.00,{'A' * 250},{day},till-1,")
    refused = refusal(ledger, content, officer, expect_total_pence=100, expect_count=1)
    assert "import rule R1 (doubled) rewrote the reference" in refused.message
    assert "(250 characters) into one of 5000 characters" in refused.message
    assert "5000 characters long" not in refused.message
