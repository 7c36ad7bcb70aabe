"""Reference rules: how a fund tells a valid payer reference from a typo.

A rule checks length, a regular-expression pattern, and optionally a weighted-modulus check
digit in the last position. Letters in the body (a prefix such as "PN") are substituted by
digits before weighting, so that references like "PN12345678" can carry a check digit.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from domain.errors import InvalidFundDefinition
from domain.limits import MAX_FUND_REFERENCE_LENGTH


class LetterValues(StrEnum):
    """How letters in the body become digits before weighting."""

    ALPHABET_POSITION = "alphabet_position"  # A=1 ... Z=26, contributing one term each
    NONE = "none"  # letters are skipped; only digits carry weight


class ReferenceProblem(StrEnum):
    EMPTY = "empty"
    LENGTH = "length"
    PATTERN = "pattern"
    CHECK_DIGIT = "check_digit"


def normalise_reference(reference: str) -> str:
    """Payers type references with spaces and in lower case; the ledger keeps one form."""
    return capitals("".join(reference.split()))


def capitals(text: str) -> str:
    """Upper case, letter for letter. A letter whose capital is longer (ß -> SS, ﬃ -> FFI)
    stays as it is, so normalising never lengthens text past a limit checked on it (a
    16-letter fund hint of ß once became 32 and overflowed its column)."""
    if text.isascii():
        return text.upper()
    return "".join(upper if len(upper := char.upper()) == 1 else char for char in text)


@dataclass(frozen=True)
class CheckDigitRule:
    """A weighted-sum modulus check digit in the reference's last position.

    Weights apply to the body's values from the rightmost leftwards, repeating the list when
    the body is longer. The check value is the remainder, or the modulus minus the remainder
    when `subtract_from_modulus`; a value of 10 is written as `ten_as` ("X" or "0") and 11
    (modulus 11, remainder 0, subtracted) as "0".
    """

    modulus: int
    weights: tuple[int, ...]
    subtract_from_modulus: bool = True
    ten_as: str = "X"
    letters: LetterValues = LetterValues.ALPHABET_POSITION

    def __post_init__(self) -> None:
        if self.modulus not in (10, 11):
            raise InvalidFundDefinition(f"check digit modulus must be 10 or 11, not {self.modulus}")
        if not self.weights or any(w <= 0 for w in self.weights):
            raise InvalidFundDefinition("check digit weights must be a list of positive numbers")
        if self.ten_as not in ("X", "0"):
            raise InvalidFundDefinition('check digit "ten_as" must be "X" or "0"')

    def _values(self, body: str) -> list[int]:
        values: list[int] = []
        for char in body:
            if char.isdigit():
                values.append(int(char))
            elif char.isalpha() and self.letters is LetterValues.ALPHABET_POSITION:
                values.append(ord(char) - ord("A") + 1)
        return values

    def check_character(self, body: str) -> str:
        values = self._values(body)
        total = sum(
            value * self.weights[i % len(self.weights)] for i, value in enumerate(reversed(values))
        )
        remainder = total % self.modulus
        check = self.modulus - remainder if self.subtract_from_modulus else remainder
        if check == 11:
            return "0"
        if check == 10:
            return self.ten_as
        return str(check)

    def is_valid(self, reference: str) -> bool:
        return len(reference) >= 2 and self.check_character(reference[:-1]) == reference[-1]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["weights"] = list(self.weights)
        data["letters"] = str(self.letters)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckDigitRule:
        return cls(
            modulus=int(data["modulus"]),
            weights=tuple(int(w) for w in data["weights"]),
            subtract_from_modulus=bool(data.get("subtract_from_modulus", True)),
            ten_as=str(data.get("ten_as", "X")),
            letters=LetterValues(data.get("letters", LetterValues.ALPHABET_POSITION)),
        )


@dataclass(frozen=True)
class ReferenceRule:
    """What a valid reference looks like for one fund."""

    min_length: int
    max_length: int
    pattern: str
    check_digit: CheckDigitRule | None = None
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.min_length <= self.max_length <= MAX_FUND_REFERENCE_LENGTH:
            raise InvalidFundDefinition(
                f"reference lengths must satisfy 1 <= min ({self.min_length}) <= "
                f"max ({self.max_length}) <= {MAX_FUND_REFERENCE_LENGTH}"
            )
        try:
            compiled = re.compile(self.pattern)
        except re.error as error:
            raise InvalidFundDefinition(
                f"reference pattern {self.pattern!r} is not a valid regular expression: {error}"
            ) from None
        object.__setattr__(self, "_compiled", compiled)

    def problem(self, reference: str) -> ReferenceProblem | None:
        """None when the (normalised) reference is valid, else what is wrong with it."""
        if not reference:
            return ReferenceProblem.EMPTY
        if not self.min_length <= len(reference) <= self.max_length:
            return ReferenceProblem.LENGTH
        if not self._compiled.fullmatch(reference):
            return ReferenceProblem.PATTERN
        if self.check_digit is not None and not self.check_digit.is_valid(reference):
            return ReferenceProblem.CHECK_DIGIT
        return None

    def describe(self) -> str:
        length = (
            f"{self.min_length}"
            if self.min_length == self.max_length
            else f"{self.min_length} to {self.max_length}"
        )
        text = f"{length} characters matching {self.pattern}"
        if self.check_digit is not None:
            text += f" with a modulus {self.check_digit.modulus} check digit"
        return text

    def with_check_digit(self, body: str) -> str:
        """Complete a body with its check digit (for demo data and tests)."""
        if self.check_digit is None:
            return body
        return body + self.check_digit.check_character(body)

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_length": self.min_length,
            "max_length": self.max_length,
            "pattern": self.pattern,
            "check_digit": self.check_digit.to_dict() if self.check_digit else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceRule:
        check = data.get("check_digit")
        return cls(
            min_length=int(data["min_length"]),
            max_length=int(data["max_length"]),
            pattern=str(data["pattern"]),
            check_digit=CheckDigitRule.from_dict(check) if check else None,
        )
