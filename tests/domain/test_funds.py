import pickle
from dataclasses import replace
from uuid import RFC_4122, UUID, SafeUUID, uuid5

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import FundAlreadyExists, FundDisabled, InvalidFundDefinition, UnknownFund
from domain.funds import LEDGER_NAMESPACE, Fund, FundChart, Match, SuspenseReason, ledger_uuid5
from domain.references import (
    CheckDigitRule,
    ReferenceProblem,
    ReferenceRule,
    normalise_reference,
)
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


def plain_match(chart: FundChart, reference: str) -> Match:
    """What `FundChart.match` answered before it looked funds up by reference length:
    every fund asked, twice when none took the reference."""
    reference = normalise_reference(reference)
    if not reference:
        return Match(None, SuspenseReason.NO_REFERENCE, "the payment carries no reference")
    valid = [f for f in chart.funds.values() if f.reference_problem(reference) is None]
    enabled = [f for f in valid if f.enabled]
    if len(enabled) == 1:
        return Match(enabled[0].code, None, f"reference matches fund {enabled[0].code} only")
    if len(enabled) > 1:
        codes = ", ".join(sorted(f.code for f in enabled))
        return Match(None, SuspenseReason.AMBIGUOUS, f"reference is valid for {codes}")
    if valid:
        return Match(
            None, SuspenseReason.DISABLED_FUND, f"reference belongs to disabled {valid[0].code}"
        )
    failing = [
        f.code
        for f in chart.funds.values()
        if f.reference_problem(reference) is ReferenceProblem.CHECK_DIGIT
    ]
    if failing:
        return Match(
            None,
            SuspenseReason.INVALID_CHECK_DIGIT,
            f"reference looks like {', '.join(sorted(failing))} but its check digit is wrong",
        )
    return Match(None, SuspenseReason.NO_MATCHING_FUND, "reference matches no fund's rule")


REFERENCE_TEXT = st.text(alphabet="0123456789ABX z", max_size=9)


@st.composite
def reference_rules(draw: st.DrawFn) -> ReferenceRule:
    min_length = draw(st.integers(1, 6))
    max_length = draw(st.integers(min_length, min_length + 3))
    pattern = draw(st.sampled_from(["[0-9]+", "[A-Z][0-9]*", "[0-9A-Z]*", "[0-9]*X?", ".*"]))
    check = draw(
        st.none()
        | st.builds(
            CheckDigitRule,
            modulus=st.sampled_from([10, 11]),
            weights=st.sampled_from([(1,), (2, 1), (7, 6, 5, 4, 3, 2)]),
            ten_as=st.sampled_from(["X", "0"]),
        )
    )
    return ReferenceRule(min_length, max_length, pattern, check)


# A change to the chart: (fund index, a new rule or None to disable / enable instead).
CHANGES = st.lists(st.tuples(st.integers(0, 5), st.none() | reference_rules()), max_size=4)


@settings(max_examples=300, deadline=None)
@given(
    rules=st.lists(reference_rules(), min_size=1, max_size=6),
    disabled=st.sets(st.integers(0, 5)),
    references=st.lists(REFERENCE_TEXT, min_size=1, max_size=8),
    changes=CHANGES,
)
def test_matching_by_reference_length_answers_as_asking_every_fund(
    rules, disabled, references, changes
) -> None:
    funds = FundChart.open(actor="test")
    for n, rule in enumerate(rules):
        funds.add_fund(replace(COUNCIL_TAX, code=f"F{n}", reference_rule=rule), actor="test")
        if n in disabled:
            funds.disable_fund(f"F{n}", actor="test", reason="test")
    for reference in references:
        assert funds.match(reference, None) == plain_match(funds, reference)
    # The funds looked up by length follow every later change to the chart.
    for n, rule in changes:
        code = f"F{n % len(rules)}"
        if rule is None and funds.funds[code].enabled:
            funds.disable_fund(code, actor="test", reason="test")
        elif rule is None:
            funds.enable_fund(code, actor="test", reason="test")
        else:
            funds.amend_fund(code, {"reference_rule": rule.to_dict()}, actor="test", reason="t")
        for reference in references:
            assert funds.match(reference, None) == plain_match(funds, reference)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_ledger_ids_are_the_uuid5_of_their_name(name: str) -> None:
    made, expected = ledger_uuid5(name), uuid5(LEDGER_NAMESPACE, name)
    # Made without UUID.__init__: the same object in every way a reader can tell.
    assert type(made) is UUID
    assert made == expected and hash(made) == hash(expected) and str(made) == str(expected)
    assert (made.version, made.variant, made.is_safe) == (5, RFC_4122, SafeUUID.unknown)
    assert pickle.loads(pickle.dumps(made)) == expected


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("１２３４５６７９", "12345679"),  # noqa: RUF001 - full-width digits, on purpose
        ("ｉｎｖ１２３４５６０", "INV1234560"),  # noqa: RUF001
        ("1234\u200b5679", "12345679"),  # a zero-width space pasted from a web page
        ("\ufeff12345679", "12345679"),  # a byte-order mark at the start of a pasted cell
        ("1234\u00ad56\u200d79\u2060", "12345679"),  # soft hyphen, joiner, word joiner
        ("\u202e12345679\u202c", "12345679"),  # bidi controls
        ("1234\u00a05679", "12345679"),  # a no-break space
        ("inv 123456 0", "INV1234560"),
    ],
)
def test_full_width_and_invisible_characters_are_normalised_so_the_account_is_found(
    typed: str, kept: str
) -> None:
    assert normalise_reference(typed) == kept
    match = chart().match(typed, None)
    assert match.fund_code is not None and match.suspense_reason is None


def test_normalising_never_lengthens_a_reference() -> None:
    """NFKC makes U+FDFA 18 characters and a ligature two: those stay as they are, so a
    reference that fitted its limit still fits after normalising."""
    assert normalise_reference("\ufdfa1") == "\ufdfa1"
    assert normalise_reference("\ufb03") == "\ufb03"
    assert normalise_reference("ß") == "ß"


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_normalising_is_idempotent_and_never_longer(text: str) -> None:
    once = normalise_reference(text)
    assert len(once) <= len(text) and normalise_reference(once) == once
