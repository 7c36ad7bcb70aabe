from dataclasses import replace

import pytest

from domain.errors import FundAlreadyExists, FundDisabled, InvalidFundDefinition, UnknownFund
from domain.funds import Fund, FundChart, SuspenseReason
from domain.references import ReferenceRule
from domain.sample_chart import COUNCIL_TAX
from tests.domain.helpers import CT_REF, SUN_REF, chart


def test_a_reference_valid_for_one_fund_only_is_matched_there() -> None:
    match = chart().match(CT_REF, None)
    assert match.fund_code == "CT" and match.suspense_reason is None


def test_references_are_normalised_before_matching() -> None:
    assert chart().match(" inv 123456 0 ", None).fund_code == "SUN"


def test_a_hint_is_followed_when_the_reference_is_valid_for_it() -> None:
    assert chart().match(SUN_REF, "sun").fund_code == "SUN"


@pytest.mark.parametrize(
    ("reference", "hint", "reason"),
    [
        ("12345678", None, SuspenseReason.INVALID_CHECK_DIGIT),
        ("12345678", "CT", SuspenseReason.INVALID_CHECK_DIGIT),
        (CT_REF, "NOPE", SuspenseReason.UNKNOWN_FUND),
        (CT_REF, "SUN", SuspenseReason.INVALID_REFERENCE),
        ("HELLO", None, SuspenseReason.NO_MATCHING_FUND),
        ("", None, SuspenseReason.NO_REFERENCE),
    ],
)
def test_what_cannot_be_matched_goes_to_suspense_with_the_reason(reference, hint, reason) -> None:
    match = chart().match(reference, hint)
    assert match.fund_code is None
    assert match.suspense_reason is reason
    assert match.detail


def test_a_reference_valid_for_two_funds_is_ambiguous() -> None:
    funds = chart()
    twin = replace(COUNCIL_TAX, code="CT2", name="Council Tax (old system)")
    funds.add_fund(twin, actor="test")
    assert funds.match(CT_REF, None).suspense_reason is SuspenseReason.AMBIGUOUS


def test_disabled_funds_take_no_money() -> None:
    funds = chart()
    funds.disable_fund("CT", actor="test", reason="migrated")
    assert funds.match(CT_REF, None).suspense_reason is SuspenseReason.DISABLED_FUND
    assert funds.match(CT_REF, "CT").suspense_reason is SuspenseReason.DISABLED_FUND
    with pytest.raises(FundDisabled):
        funds.enabled_fund("CT")
    funds.enable_fund("CT", actor="test", reason="back")
    assert funds.match(CT_REF, None).fund_code == "CT"


def test_changes_to_funds_are_events_and_rebuild_the_same_chart() -> None:
    funds = chart()
    funds.amend_fund("SUN", {"vat_rate_basis_points": 500, "name": "Sundry"}, "test", "rate")
    funds.disable_fund("BOP", "test", "closed")
    events = funds.collect_events()
    assert [type(e).__name__ for e in events[-2:]] == ["FundAmended", "FundDisabled"]
    rebuilt = None
    for event in events:
        rebuilt = event.mutate(rebuilt)
    assert rebuilt.funds == funds.funds


def test_amending_nothing_records_nothing_and_unknown_fields_are_refused() -> None:
    funds = chart()
    funds.collect_events()
    funds.amend_fund("CT", {"name": "Council Tax"}, "test", "same")
    assert funds.collect_events() == []
    with pytest.raises(InvalidFundDefinition, match="cannot amend enabled"):
        funds.amend_fund("CT", {"enabled": False}, "test", "no")


def test_duplicate_and_unknown_funds_are_named_errors() -> None:
    funds = chart()
    with pytest.raises(FundAlreadyExists):
        funds.add_fund(COUNCIL_TAX, actor="test")
    with pytest.raises(UnknownFund, match="known funds"):
        funds.fund("XYZ")


@pytest.mark.parametrize(
    "changes",
    [{"code": "bad code"}, {"name": " "}, {"vat_rate_basis_points": 20001}, {"cost_centre": ""}],
)
def test_bad_fund_definitions_are_refused(changes) -> None:
    with pytest.raises(InvalidFundDefinition):
        Fund.from_dict(COUNCIL_TAX.to_dict() | changes)


def test_funds_round_trip_through_dicts() -> None:
    assert Fund.from_dict(COUNCIL_TAX.to_dict()) == COUNCIL_TAX
    rule = ReferenceRule(3, 3, "[A-Z]{3}")
    assert (
        Fund.from_dict(replace(COUNCIL_TAX, reference_rule=rule).to_dict()).reference_rule == rule
    )


def test_the_chart_has_one_well_known_id() -> None:
    assert FundChart.create_id() == FundChart.create_id()
