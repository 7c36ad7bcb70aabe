"""Reference rules: how a fund tells a valid payer reference from a typo.

A rule checks length, a regular-expression pattern (or an input mask such as `AA99999999`,
which councils' own systems print on their forms), and optionally a weighted-modulus check
character in the last position. Before weighting, a prefix may be substituted by digits (a
PCN's "BJ" counts as "05") and remaining letters count by their alphabet position or not at
all; the check value becomes a character through a table when the scheme has one (modulus 23
schemes use letters). All of it is data, so a council describes its own references without
code.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from itertools import cycle
from operator import mul
from typing import Any

from domain.errors import InvalidFundDefinition
from domain.limits import MAX_FUND_REFERENCE_LENGTH


class LetterValues(StrEnum):
    """How letters in the body become digits before weighting."""

    ALPHABET_POSITION = "alphabet_position"  # A=1 ... Z=26, contributing one term each
    NONE = "none"  # letters are skipped; only digits carry weight


MIN_MODULUS = 2
MAX_MODULUS = 97
MAX_WEIGHTS = 32
MAX_SUBSTITUTIONS = 16
MAX_MASK_LENGTH = 64
# Input-mask characters: anything else in a mask stands for itself.
MASK_CLASSES = {"9": "[0-9]", "A": "[A-Z]", "X": "[A-Z0-9]"}
MASK_ESCAPE = "\\"
ZERO = ord("0")


class ReferenceProblem(StrEnum):
    EMPTY = "empty"
    LENGTH = "length"
    PATTERN = "pattern"
    CHECK_DIGIT = "check_digit"


def normalise_reference(reference: str) -> str:
    """Payers type references with spaces and in lower case; the ledger keeps one form.

    Payers also paste references from phones and web pages: full-width digits and letters
    (U+FF11 for 1, typed with a Japanese or Chinese keyboard) become ASCII, and invisible format
    characters (a zero-width space, a byte-order mark, direction marks) are dropped, so the
    reference finds its account instead of waiting in suspense. Only new input is
    normalised: a reference already recorded is kept as it was recorded, and replaying its
    events never calls this (see `legacy_normalise_reference`)."""
    if not reference.isascii():
        reference = _compatible(reference)
    return capitals("".join(reference.split()))


def legacy_normalise_reference(reference: str) -> str:
    """The form references were recorded in before full-width characters were folded
    (2026-12-01): finds an allocation recorded then when its reference is typed as it was."""
    return capitals("".join(reference.split()))


def _compatible(text: str) -> str:
    """Each character's NFKC compatibility form (a full-width A or 1 as the ASCII one, a no-break space
    as a space) when that is one character, so normalising never lengthens a reference
    past a limit checked on it (NFKC makes U+FDFA 18 characters); format characters (Unicode
    category Cf: zero-width space and joiners, soft hyphen, BOM, bidi controls) dropped."""
    kept = []
    for char in text:
        if unicodedata.category(char) == "Cf":
            continue
        folded = unicodedata.normalize("NFKC", char)
        kept.append(folded if len(folded) == 1 else char)
    return "".join(kept)


def capitals(text: str) -> str:
    """Upper case, letter for letter. A letter whose capital is longer (ß -> SS, ﬃ -> FFI)
    stays as it is, so normalising never lengthens text past a limit checked on it (a
    16-letter fund hint of ß once became 32 and overflowed its column)."""
    if text.isascii():
        return text.upper()
    return "".join(upper if len(upper := char.upper()) == 1 else char for char in text)


@dataclass(frozen=True)
class CheckDigitRule:
    """A weighted-sum modulus check character in the reference's last position.

    Before weighting, the body's start is rewritten by the first matching
    `prefix_substitutions` pair (("BJ", "05") makes "BJ1234" weigh as "051234"). Weights apply
    to the body's values from the rightmost leftwards, repeating the list when the body is
    longer. The check value is the remainder, or the modulus minus the remainder when
    `subtract_from_modulus`. With `check_characters` the value picks its character from that
    table (position 0 for value 0); without it, digits are written as themselves, 10 as
    `ten_as` ("X" or "0") and 11 (modulus 11, remainder 0, subtracted) as "0".
    """

    modulus: int
    weights: tuple[int, ...]
    subtract_from_modulus: bool = True
    ten_as: str = "X"
    letters: LetterValues = LetterValues.ALPHABET_POSITION
    check_characters: str = ""
    prefix_substitutions: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not MIN_MODULUS <= self.modulus <= MAX_MODULUS:
            raise InvalidFundDefinition(
                f"check digit modulus must be between {MIN_MODULUS} and {MAX_MODULUS}, "
                f"not {self.modulus}"
            )
        if not 0 < len(self.weights) <= MAX_WEIGHTS or any(w <= 0 for w in self.weights):
            raise InvalidFundDefinition(
                f"check digit weights must be a list of 1 to {MAX_WEIGHTS} positive numbers"
            )
        if self.ten_as not in ("X", "0"):
            raise InvalidFundDefinition('check digit "ten_as" must be "X" or "0"')
        self._check_table()
        self._check_substitutions()

    def _check_table(self) -> None:
        if not self.check_characters:
            if self.modulus > 11:
                raise InvalidFundDefinition(
                    f"a modulus {self.modulus} scheme needs check_characters: the character "
                    "for each check value, starting with the value 0"
                )
            return
        # Subtracting a remainder of 0 gives the modulus itself, so that value needs a
        # character too.
        needed = self.modulus + 1 if self.subtract_from_modulus else self.modulus
        if len(self.check_characters) != needed:
            raise InvalidFundDefinition(
                f"check_characters must give {needed} characters (one for each check value "
                f"0 to {needed - 1}), not {len(self.check_characters)}"
            )
        table = self.check_characters
        if not (table.isascii() and table.isalnum() and table == table.upper()):
            raise InvalidFundDefinition("check_characters must be capital letters and digits")

    def _check_substitutions(self) -> None:
        if len(self.prefix_substitutions) > MAX_SUBSTITUTIONS:
            raise InvalidFundDefinition(
                f"at most {MAX_SUBSTITUTIONS} prefix substitutions, not "
                f"{len(self.prefix_substitutions)}"
            )
        for prefix, digits in self.prefix_substitutions:
            if (
                not prefix
                or not prefix.isascii()
                or not prefix.isalnum()
                or prefix != prefix.upper()
            ):
                raise InvalidFundDefinition(
                    f"prefix substitution {prefix!r}: the prefix must be capital letters or digits"
                )
            if not digits.isascii() or not digits.isdigit():
                raise InvalidFundDefinition(
                    f"prefix substitution {prefix!r} -> {digits!r}: the replacement must be digits"
                )

    def _substituted(self, body: str) -> str:
        for prefix, digits in self.prefix_substitutions:
            if body.startswith(prefix):
                return digits + body[len(prefix) :]
        return body

    def _values(self, body: str) -> list[int]:
        body = self._substituted(body)
        if body.isascii() and body.isdigit():  # most references: each digit its value
            return [ord(char) - ZERO for char in body]
        values: list[int] = []
        for char in body:
            if char.isdigit():
                values.append(int(char))
            elif char.isalpha() and self.letters is LetterValues.ALPHABET_POSITION:
                values.append(ord(char) - ord("A") + 1)
        return values

    def check_value(self, body: str) -> int:
        """The number the scheme computes for a body, before it becomes a character."""
        # The weights from the rightmost value leftwards, the list repeated as needed.
        total = sum(map(mul, reversed(self._values(body)), cycle(self.weights)))
        remainder = total % self.modulus
        return self.modulus - remainder if self.subtract_from_modulus else remainder

    def check_character(self, body: str) -> str:
        check = self.check_value(body)
        if self.check_characters:
            return self.check_characters[check]
        if check == 11:
            return "0"
        if check == 10:
            return self.ten_as
        return str(check)

    def is_valid(self, reference: str) -> bool:
        return len(reference) >= 2 and self.check_character(reference[:-1]) == reference[-1]

    def describe(self) -> str:
        kind = "character" if self.check_characters else "digit"
        text = f"a modulus {self.modulus} check {kind}"
        if self.prefix_substitutions:
            pairs = ", ".join(f"{p} as {d}" for p, d in self.prefix_substitutions)
            text += f" (counting {pairs})"
        return text

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["weights"] = list(self.weights)
        data["letters"] = str(self.letters)
        # Stored rules from before these options existed have neither key; keep them out
        # when unused so an unchanged rule stores as it always did.
        if not self.check_characters:
            del data["check_characters"]
        if self.prefix_substitutions:
            data["prefix_substitutions"] = [list(pair) for pair in self.prefix_substitutions]
        else:
            del data["prefix_substitutions"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckDigitRule:
        unknown = sorted(set(data) - CHECK_DIGIT_KEYS)
        if unknown:
            raise InvalidFundDefinition(
                f"unknown check digit setting {', '.join(unknown)}; the settings are "
                f"{', '.join(sorted(CHECK_DIGIT_KEYS))}"
            )
        return cls(
            modulus=int(data["modulus"]),
            weights=tuple(int(w) for w in data["weights"]),
            subtract_from_modulus=bool(data.get("subtract_from_modulus", True)),
            ten_as=str(data.get("ten_as", "X")),
            letters=LetterValues(data.get("letters", LetterValues.ALPHABET_POSITION)),
            check_characters=str(data.get("check_characters", "")),
            prefix_substitutions=_substitution_pairs(data.get("prefix_substitutions", [])),
        )


CHECK_DIGIT_KEYS = frozenset(
    {
        "modulus",
        "weights",
        "subtract_from_modulus",
        "ten_as",
        "letters",
        "check_characters",
        "prefix_substitutions",
    }
)


def _substitution_pairs(raw: Any) -> tuple[tuple[str, str], ...]:
    """Pairs from JSON: [["BJ", "05"], ...] or {"BJ": "05", ...}."""
    items = raw.items() if isinstance(raw, dict) else raw
    return tuple((str(prefix), str(digits)) for prefix, digits in items)


def mask_parts(mask: str) -> list[str]:
    """One regular expression per character position of an input mask: 9 a digit, A a
    capital letter, X either; a backslash makes the next character literal, and anything
    else stands for itself."""
    if not 0 < len(mask) <= MAX_MASK_LENGTH:
        raise InvalidFundDefinition(f"an input mask is 1 to {MAX_MASK_LENGTH} characters long")
    parts: list[str] = []
    escaped = False
    for char in mask:
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == MASK_ESCAPE:
            escaped = True
        else:
            parts.append(MASK_CLASSES.get(char) or re.escape(char))
    if escaped:
        raise InvalidFundDefinition(f"input mask {mask!r} ends with a lone backslash")
    return parts


@dataclass(frozen=True)
class ReferenceRule:
    """What a valid reference looks like for one fund.

    Either a pattern with its lengths, or an input mask (`ReferenceRule.from_mask`), which
    sets both: the mask is kept so that people see the form they know.
    """

    min_length: int
    max_length: int
    pattern: str
    check_digit: CheckDigitRule | None = None
    mask: str | None = None
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.min_length <= self.max_length <= MAX_FUND_REFERENCE_LENGTH:
            raise InvalidFundDefinition(
                f"reference lengths must satisfy 1 <= min ({self.min_length}) <= "
                f"max ({self.max_length}) <= {MAX_FUND_REFERENCE_LENGTH}"
            )
        if self.mask is not None:
            parts = mask_parts(self.mask)
            lengths = (self.min_length, self.max_length)
            if self.pattern != "".join(parts) or lengths != (len(parts), len(parts)):
                raise InvalidFundDefinition(
                    f"input mask {self.mask!r} sets the pattern and lengths: give the mask alone"
                )
        try:
            compiled = re.compile(self.pattern)
        except re.error as error:
            raise InvalidFundDefinition(
                f"reference pattern {self.pattern!r} is not a valid regular expression: {error}"
            ) from None
        object.__setattr__(self, "_compiled", compiled)

    @classmethod
    def from_mask(cls, mask: str, check_digit: CheckDigitRule | None = None) -> ReferenceRule:
        parts = mask_parts(mask)
        return cls(len(parts), len(parts), "".join(parts), check_digit, mask)

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
        if self.mask is not None:
            text = f"the form {self.mask} (9 a digit, A a letter, X either)"
        else:
            length = (
                f"{self.min_length}"
                if self.min_length == self.max_length
                else f"{self.min_length} to {self.max_length}"
            )
            text = f"{length} characters matching {self.pattern}"
        if self.check_digit is not None:
            text += f" with {self.check_digit.describe()}"
        return text

    def with_check_digit(self, body: str) -> str:
        """Complete a body with its check digit (for demo data and tests)."""
        if self.check_digit is None:
            return body
        return body + self.check_digit.check_character(body)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "min_length": self.min_length,
            "max_length": self.max_length,
            "pattern": self.pattern,
            "check_digit": self.check_digit.to_dict() if self.check_digit else None,
        }
        if self.mask is not None:
            data["mask"] = self.mask
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceRule:
        """From stored or typed data: a mask alone, or a pattern with its lengths."""
        check = data.get("check_digit")
        check_digit = CheckDigitRule.from_dict(check) if check else None
        given = {
            k: data[k] for k in ("min_length", "max_length", "pattern") if data.get(k) is not None
        }
        mask = data.get("mask")
        if mask is not None:
            rule = cls.from_mask(str(mask), check_digit)
            if any(given[k] != getattr(rule, k) for k in given):
                raise InvalidFundDefinition(
                    f"input mask {mask!r} sets the pattern and lengths: give the mask alone"
                )
            return rule
        if len(given) < 3:
            raise InvalidFundDefinition(
                "a reference rule needs a mask, or a pattern with min_length and max_length"
            )
        return cls(
            min_length=int(data["min_length"]),
            max_length=int(data["max_length"]),
            pattern=str(data["pattern"]),
            check_digit=check_digit,
        )
