"""Money is integer pence inside; pounds appear only at the edges, as strings."""

from __future__ import annotations

import re

from domain.errors import InvalidAmount

MAX_AMOUNT_PENCE = 100_000_000_000  # £1bn: a bound on any one movement, to catch typos.
# Commas only as thousands separators: "12,50" is a European decimal comma, not 1,250 pounds.
# ASCII digits only: to Python, Arabic-Indic or full-width digits are digits too (and int()
# reads them), but no file or form of ours writes an amount so: one that does is mangled.
_POUNDS = re.compile(
    r"^(?P<sign>-?)(?P<pounds>\d{1,3}(?:,\d{3}){1,3}|\d{1,12})(?:\.(?P<pence>\d{1,2}))?$",
    re.ASCII,
)


def pounds_to_pence(text: str) -> int:
    """Parse "12.50" (or "12", "12.5", "£1,234.56") into 1250 pence, exactly."""
    match = _POUNDS.match(text.strip().removeprefix("£"))
    if match is None:
        raise InvalidAmount(
            f"{text!r} is not an amount in pounds: write it like 12.50 (a comma may only "
            "separate thousands, as in 1,234.56)"
        )
    pounds = int(match["pounds"].replace(",", ""))
    pence = pounds * 100 + int((match["pence"] or "0").ljust(2, "0"))
    return -pence if match["sign"] else pence


def pence_to_pounds(amount_pence: int) -> str:
    """Format 1250 as "12.50" and -5 as "-0.05": for machines (CSV, files), so no separators.

    People read pounds_text.
    """
    sign = "-" if amount_pence < 0 else ""
    pounds, pence = divmod(abs(amount_pence), 100)
    return f"{sign}{pounds}.{pence:02d}"


def pounds_text(amount_pence: int) -> str:
    """Format 1250 as "£12.50" and -123456 as "-£1,234.56", as people read an amount.

    The one formatter for every amount a person reads (web pages, the CLI's tables, error
    messages). Machines get pence, or pence_to_pounds's plain numbers.
    """
    sign = "-" if amount_pence < 0 else ""
    pounds, pence = divmod(abs(amount_pence), 100)
    return f"{sign}£{pounds:,}.{pence:02d}"


def require_positive_pence(amount_pence: object, what: str = "the amount") -> int:
    """Every movement is a positive whole number of pence below a sane ceiling."""
    if isinstance(amount_pence, bool) or not isinstance(amount_pence, int):
        raise InvalidAmount(f"{what} must be a whole number of pence, got {amount_pence!r}")
    if amount_pence <= 0:
        raise InvalidAmount(f"{what} must be more than zero, got {pounds_text(amount_pence)}")
    if amount_pence > MAX_AMOUNT_PENCE:
        raise InvalidAmount(
            f"{what} of {pounds_text(amount_pence)} is over the limit of "
            f"{pounds_text(MAX_AMOUNT_PENCE)} for one entry"
        )
    return amount_pence


def vat_from_gross(gross_pence: int, rate_basis_points: int) -> int:
    """The VAT part of a VAT-inclusive amount, rounded half away from zero.

    At 20% (2000 basis points) the VAT in £1.20 is 20p: gross * rate / (1 + rate).
    """
    if rate_basis_points == 0 or gross_pence == 0:
        return 0
    denominator = 10_000 + rate_basis_points
    magnitude = (2 * abs(gross_pence) * rate_basis_points + denominator) // (2 * denominator)
    return magnitude if gross_pence > 0 else -magnitude
