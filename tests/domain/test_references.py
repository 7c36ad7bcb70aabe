import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
        lambda: CheckDigitRule(modulus=1, weights=(1,)),
        lambda: CheckDigitRule(modulus=98, weights=(1,), check_characters="0" * 99),
        lambda: CheckDigitRule(modulus=23, weights=(1,)),  # no characters for 10..23
        lambda: CheckDigitRule(modulus=7, weights=(1,), check_characters="0123456"),  # 7 needs 8
        lambda: CheckDigitRule(modulus=7, weights=(1,), check_characters="abcdefgh"),
        lambda: CheckDigitRule(modulus=10, weights=(1,), prefix_substitutions=(("BJ", "O5"),)),
        lambda: CheckDigitRule(modulus=10, weights=(1,), prefix_substitutions=(("", "05"),)),
        lambda: CheckDigitRule(modulus=10, weights=(1,) * 33),
        lambda: CheckDigitRule.from_dict({"modulus": 10, "weights": [1], "modulo": 11}),
        lambda: ReferenceRule.from_mask(""),
        lambda: ReferenceRule.from_mask("AA99\\"),
        lambda: ReferenceRule.from_dict({"mask": "AA99", "min_length": 3}),
        lambda: ReferenceRule(4, 4, "[A-Z]{4}", mask="AA99"),
        lambda: CheckDigitRule(11, ()),
        lambda: CheckDigitRule(11, (1,), ten_as="Y"),
    ],
)
def test_bad_rules_are_refused_with_a_reason(build) -> None:
    with pytest.raises(InvalidFundDefinition):
        build()


def test_a_modulus_23_scheme_writes_its_check_value_as_a_letter() -> None:
    # The Irish PPS number's scheme: weights 8..2 from the left, remainder 0 is W, 1-22 A-V.
    rule = CheckDigitRule(
        modulus=23,
        weights=(2, 3, 4, 5, 6, 7, 8),
        subtract_from_modulus=False,
        check_characters="WABCDEFGHIJKLMNOPQRSTUV",
    )
    # 1*8 + 2*7 + 3*6 + 4*5 + 5*4 + 6*3 + 7*2 = 112; 112 % 23 = 20, the 20th letter T.
    assert rule.check_value("1234567") == 20
    assert rule.check_character("1234567") == "T"
    assert rule.is_valid("1234567T")
    assert not rule.is_valid("1234567W")


def test_a_subtracted_scheme_needs_a_character_for_the_modulus_itself() -> None:
    rule = CheckDigitRule(modulus=7, weights=(1,), check_characters="ABCDEFGH")
    assert rule.check_character("7") == "H"  # remainder 0: 7 - 0 = 7, the table's last
    assert rule.check_character("1") == "G"  # 7 - 1 = 6


def test_a_prefix_is_weighed_as_its_substitute() -> None:
    # A PCN's "BJ" counts as "05" before weighting; other prefixes count by letter position.
    substituted = CheckDigitRule(
        modulus=11, weights=(2, 3, 4, 5, 6, 7, 8, 9), prefix_substitutions=(("BJ", "05"),)
    )
    plain = CheckDigitRule(modulus=11, weights=(2, 3, 4, 5, 6, 7, 8, 9))
    assert substituted.check_character("BJ123456") == plain.check_character("05123456")
    assert substituted.check_character("ZY123456") == plain.check_character("ZY123456")


def test_the_first_matching_prefix_substitution_applies() -> None:
    rule = CheckDigitRule(
        modulus=10,
        weights=(1,),
        subtract_from_modulus=False,
        prefix_substitutions=(("BJ", "9"), ("B", "1")),
    )
    assert rule.check_value("BJ0") == 9
    assert rule.check_value("BX0") == 5  # B -> 1, X counts 24: 25 % 10


def test_an_input_mask_sets_pattern_and_lengths() -> None:
    rule = ReferenceRule.from_mask("AA99999X-\\9")
    assert (rule.min_length, rule.max_length) == (10, 10)
    assert rule.problem("PN12345A-9") is None
    assert rule.problem("PN123456-9") is None
    assert rule.problem("P112345A-9") is ReferenceProblem.PATTERN
    assert rule.problem("PN12345A-1") is ReferenceProblem.PATTERN  # the escaped 9 is literal
    assert "AA99999X" in rule.describe()


def test_masked_rules_store_their_mask_and_read_back() -> None:
    check = CheckDigitRule(modulus=10, weights=(1, 3), prefix_substitutions=(("BJ", "05"),))
    rule = ReferenceRule.from_mask("AA9999999", check)
    data = rule.to_dict()
    assert data["mask"] == "AA9999999"
    assert data["check_digit"]["prefix_substitutions"] == [["BJ", "05"]]
    assert ReferenceRule.from_dict(data) == rule
    assert ReferenceRule.from_dict({"mask": "AA9999999", "check_digit": check.to_dict()}) == rule


def test_rules_stored_before_the_new_options_store_as_they_did() -> None:
    stored = {
        "min_length": 8,
        "max_length": 8,
        "pattern": "[0-9]{8}",
        "check_digit": {
            "modulus": 11,
            "weights": [2, 3, 4, 5, 6, 7, 8],
            "subtract_from_modulus": True,
            "ten_as": "0",
            "letters": "alphabet_position",
        },
    }
    assert ReferenceRule.from_dict(stored).to_dict() == stored


schemes = st.builds(
    lambda modulus, weights, subtract, table_seed, prefixes: CheckDigitRule(
        modulus=modulus,
        weights=tuple(weights),
        subtract_from_modulus=subtract,
        check_characters="".join(
            table_seed[i % len(table_seed)] for i in range(modulus + 1 if subtract else modulus)
        ),
        prefix_substitutions=tuple(prefixes.items()),
    ),
    st.integers(2, 97),
    st.lists(st.integers(1, 99), min_size=1, max_size=8),
    st.booleans(),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=40),
    st.dictionaries(
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=3),
        st.text(alphabet="0123456789", min_size=1, max_size=3),
        max_size=3,
    ),
)


@given(schemes, st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=20))
def test_any_described_scheme_accepts_its_own_check_character(scheme, body) -> None:
    rule = ReferenceRule(2, 21, "[A-Z0-9]+", scheme)
    assert rule.problem(rule.with_check_digit(body)) is None
    assert ReferenceRule.from_dict(rule.to_dict()) == rule
    wrong = {c for c in scheme.check_characters} - {scheme.check_character(body)}
    for character in wrong:
        assert rule.problem(body + character) is ReferenceProblem.CHECK_DIGIT


def plain_check_value(rule: CheckDigitRule, body: str) -> int:
    """The check value as worked out before digits had a quicker way: char by char."""
    values = []
    for char in rule._substituted(body):
        if char.isdigit():
            values.append(int(char))
        elif char.isalpha() and rule.letters is LetterValues.ALPHABET_POSITION:
            values.append(ord(char) - ord("A") + 1)
    total = sum(value * rule.weights[i % len(rule.weights)] for i, value in enumerate(values[::-1]))
    remainder = total % rule.modulus
    return rule.modulus - remainder if rule.subtract_from_modulus else remainder


@settings(max_examples=500, deadline=None)
@given(
    modulus=st.integers(2, 11),
    weights=st.lists(st.integers(1, 12), min_size=1, max_size=8).map(tuple),
    subtract=st.booleans(),
    letters=st.sampled_from(list(LetterValues)),
    substitutions=st.sampled_from([(), (("BJ", "05"),), (("1", "99"),)]),
    body=st.text(alphabet="0123456789BJXZ٣", max_size=45),
)
def test_check_values_are_what_char_by_char_weighting_gives(
    modulus, weights, subtract, letters, substitutions, body
) -> None:
    rule = CheckDigitRule(
        modulus,
        weights,
        subtract_from_modulus=subtract,
        letters=letters,
        prefix_substitutions=substitutions,
    )
    assert rule.check_value(body) == plain_check_value(rule, body)
