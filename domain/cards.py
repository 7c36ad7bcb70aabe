"""Card numbers never enter the ledger (PCI DSS): text that holds one is refused."""

from __future__ import annotations

import re

from domain.errors import CardNumberRejected

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


def reject_card_numbers(field: str, text: str | None) -> None:
    if text and contains_card_number(text):
        raise CardNumberRejected(
            f"{field} looks like it holds a full card number; card numbers must never be "
            "recorded. Remove it (at most the first six and last four digits may be kept)."
        )
