import pytest

from domain.errors import InvalidFundDefinition
from domain.references import CheckDigitRule, LetterValues, ReferenceProblem, ReferenceRule
from domain.sample_chart import (
    BUSINESS_RATES,
    COUNCIL_TAX,
    HOUSING_RENTS,
    PARKING_PCN,
    SAMPLE_FUNDS,
    SUNDRY_DEBTORS,
)


def test_modulus_11_subtracted_with_weights_from_the_right() -> None:
    rule = CheckDigitRule(modulus=11, weights=(2, 3, 4, 5, 6, 7, 8), ten_as="0")
    # 1234567: 7*2+6*3+5*4+4*5+3*6+2*7+1*8 = 112; 112 % 11 = 2; 11 - 2 = 9
    assert rule.check_character("1234567") == "9"
    assert rule.is_valid("12345679")
    assert not rule.is_valid("12345678")


def test_remainder_ten_maps_to_the_configured_character() -> None:
    with_x = CheckDigitRule(modulus=11, weights=(1,), ten_as="X")
    with_zero = CheckDigitRule(modulus=11, weights=(1,), ten_as="0")
    assert with_x.check_character("1") == "X"  # 11 - 1 = 10
    assert with_zero.check_character("1") == "0"
    assert with_x.check_character("0") == "0"  # 11 - 0 = 11 is written 0


def test_plain_remainder_without_subtraction() -> None:
    rule = CheckDigitRule(modulus=10, weights=(1,), subtract_from_modulus=False)
    assert rule.check_character("37") == "0"
    assert rule.check_character("38") == "1"


def test_letters_count_by_alphabet_position_or_are_skipped() -> None:
    by_position = CheckDigitRule(modulus=10, weights=(1,), subtract_from_modulus=False)
    skipped = CheckDigitRule(
        modulus=10, weights=(1,), subtract_from_modulus=False, letters=LetterValues.NONE
    )
    assert by_position.check_character("B1") == "3"  # B=2, 1
    assert skipped.check_character("B1") == "1"


@pytest.mark.parametrize(
    ("fund", "body"),
    [
        (COUNCIL_TAX, "1234567"),
        (BUSINESS_RATES, "12345678"),
        (HOUSING_RENTS, "123456"),
        (PARKING_PCN, "PN1234567"),
        (SUNDRY_DEBTORS, "INV123456"),
    ],
)
def test_sample_funds_accept_their_own_check_digits_and_catch_typos(fund, body) -> None:
    rule = fund.reference_rule
    good = rule.with_check_digit(body)
    assert rule.problem(good) is None
    wrong_last = good[:-1] + ("1" if good[-1] != "1" else "2")
    assert rule.problem(wrong_last) is ReferenceProblem.CHECK_DIGIT


def test_problems_are_named() -> None:
    rule = COUNCIL_TAX.reference_rule
    assert rule.problem("") is ReferenceProblem.EMPTY
    assert rule.problem("123") is ReferenceProblem.LENGTH
    assert rule.problem("1234567A") is ReferenceProblem.PATTERN


def test_rules_round_trip_through_dicts() -> None:
    for fund in SAMPLE_FUNDS:
        assert ReferenceRule.from_dict(fund.reference_rule.to_dict()) == fund.reference_rule


@pytest.mark.parametrize(
    "build",
    [
        lambda: ReferenceRule(5, 4, r"\d+"),
        lambda: ReferenceRule(1, 5, "[unclosed"),
        lambda: CheckDigitRule(modulus=7, weights=(1,)),
        lambda: CheckDigitRule(11, ()),
        lambda: CheckDigitRule(11, (1,), ten_as="Y"),
    ],
)
def test_bad_rules_are_refused_with_a_reason(build) -> None:
    with pytest.raises(InvalidFundDefinition):
        build()
