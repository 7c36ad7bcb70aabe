"""What text may hold: never a card number (PCI DSS), never control characters."""

from __future__ import annotations

import re

from domain.errors import CardNumberRejected, InvalidTextCharacters

# 13 to 19 digits, possibly grouped by single spaces or dashes as people type them.
_CANDIDATE = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def contains_card_number(text: str) -> bool:
    for match in _CANDIDATE.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return True
    return False


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def reject_card_numbers(field: str, text: str | None) -> None:
    """Refuse text holding a card number, or control characters that no person types (they
    would also poison the read model: PostgreSQL text cannot hold NUL)."""
    if text and _CONTROL.search(text):
        raise InvalidTextCharacters(
            f"{field} contains control characters (such as NUL); remove them"
        )
    if text and contains_card_number(text):
        raise CardNumberRejected(
            f"{field} looks like it holds a full card number; card numbers must never be "
            "recorded. Remove it (at most the first six and last four digits may be kept)."
        )
