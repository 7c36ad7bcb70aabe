import pytest

from domain.errors import InvalidAmount
from domain.money import (
    pence_to_pounds,
    pounds_text,
    pounds_to_pence,
    require_positive_pence,
    vat_from_gross,
)


@pytest.mark.parametrize(
    ("text", "pence"),
    [
        ("12.50", 1250),
        ("12.5", 1250),
        ("12", 1200),
        ("0.01", 1),
        ("£1,234.56", 123456),
        ("-3.05", -305),
        (" 7.00 ", 700),
        ("1,234,567", 123456700),
        ("999,999,999,999.99", 99999999999999),
    ],
)
def test_pounds_parse_exactly(text: str, pence: int) -> None:
    assert pounds_to_pence(text) == pence


@pytest.mark.parametrize(
    "text",
    [
        "12.505",
        "abc",
        "",
        "1e3",
        "12,50.0.1",
        "NaN",
        "12,50",
        "1,23",
        "12,5",
        ",5",
        "1,2345",
        "1,,234",
        # Digits of other scripts are Unicode digits to Python's \d and int(), so these
        # were read as 12.50: an amount is written in the digits 0 to 9 only.
        "\u0661\u0662.\u0665\u0660",  # Arabic-Indic
        "\uff11\uff12.50",  # full width
        "1\U0001d7d0.50",  # mathematical bold 2
        "\u0967,234.56",  # Devanagari 1 before a thousands comma
    ],
)
def test_bad_pounds_say_how_to_write_them(text: str) -> None:
    with pytest.raises(InvalidAmount, match="write it like 12.50"):
        pounds_to_pence(text)


def test_pence_format_as_pounds() -> None:
    assert [pence_to_pounds(p) for p in (0, 5, 1250, -5, 100000)] == [
        "0.00",
        "0.05",
        "12.50",
        "-0.05",
        "1000.00",
    ]


def test_people_read_pounds_with_thousands_separators() -> None:
    """pence_to_pounds stays a plain number for files; pounds_text is what a person reads."""
    amounts = (0, 5, -5, 99_999, 100_000, 1_480_919, -123_456, 100_000_000_000)
    assert [pounds_text(p) for p in amounts] == [
        "£0.00",
        "£0.05",
        "-£0.05",
        "£999.99",
        "£1,000.00",
        "£14,809.19",
        "-£1,234.56",
        "£1,000,000,000.00",
    ]
    assert pence_to_pounds(1_480_919) == "14809.19"
    assert pounds_to_pence(pounds_text(1_480_919)) == 1_480_919


@pytest.mark.parametrize("amount", [0, -1, 1.5, True, "10", 10**12])
def test_amounts_must_be_positive_whole_pence(amount: object) -> None:
    with pytest.raises(InvalidAmount):
        require_positive_pence(amount)


@pytest.mark.parametrize(
    ("gross", "rate", "vat"),
    [
        (120, 2000, 20),
        (12000, 2000, 2000),
        (1, 2000, 0),
        (3, 2000, 1),
        (105, 500, 5),
        (999, 0, 0),
        (-120, 2000, -20),
    ],
)
def test_vat_is_the_inclusive_part_rounded_half_up(gross: int, rate: int, vat: int) -> None:
    assert vat_from_gross(gross, rate) == vat
