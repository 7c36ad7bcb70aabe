"""What text may hold: never a card number (PCI DSS), never control characters."""

from __future__ import annotations

import re
import unicodedata

from domain.errors import CardNumberRejected, InvalidTextCharacters, ReasonRequired
from domain.limits import MAX_TEXT_LENGTH, require_length

# A card number as people write it: a standalone run of 13 to 19 digits, or grouped by single
# whitespace or dashes the way cards print them (4-4-4-4, with up to three more digits for
# 19-digit cards, or 4-6-5 / 4-6-4 for Amex and Diners). A run with a letter or digit right
# next to it is part of a longer token, an identifier, not a card number: in the UUID
# f23e86e1-0646-4773-8447-c469d07d8b49, "1-0646-4773-8447" passes Luhn but its "1" belongs
# to "f23e86e1". A dash, an underscore or any other punctuation around a run does not make
# it an identifier ("PCN-4111111111111111" and "ref_4111111111111111" still hold one), so
# the edges are "no letter or digit" ([^\W_]), not "no word character" (\w counts "_").
_CARD = re.compile(
    r"(?<![^\W_])"
    r"(?:\d{13,19}"
    r"|\d{4}[\s-]\d{4}[\s-]\d{4}[\s-]\d{4}(?P<extra>[\s-]\d{1,3})?"
    r"|\d{4}[\s-]\d{6}[\s-]\d{4,5})"
    r"(?![^\W_])"
)
_NOT_DIGIT = re.compile(r"\D")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
KEPT_FIRST_DIGITS = 6
# The fewest digits `_CARD` takes (an ASCII text needs as many characters to hold one).
SHORTEST_CARD_NUMBER = 13
KEPT_LAST_DIGITS = 4


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _canonical(char: str) -> str:
    """One character as the guard reads it: compatibility forms folded (NFKC: full-width
    digits are digits, a non-breaking space a space), every kind of dash a dash, and
    invisible format characters (zero-width space, soft hyphen) gone."""
    out = []
    for c in unicodedata.normalize("NFKC", char):
        if c == "\u2212" or unicodedata.category(c) == "Pd":
            out.append("-")
        elif unicodedata.category(c) != "Cf":
            out.append(c)
    return "".join(out)


def _normalised(text: str) -> tuple[str, list[int] | None]:
    """The text as the guard reads it, and for each of its characters the index of the
    original character it came from (None when the positions are the same)."""
    if text.isascii():  # already in normal form: the common case, kept fast
        return text, None
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        canonical = _canonical(char)
        chars.append(canonical)
        origin.extend([index] * len(canonical))
    return "".join(chars), origin


def _card_spans(normalised: str) -> list[list[int]]:
    """For each card number in the normalised text, the positions of its digits."""
    found = []
    for match in _CARD.finditer(normalised):
        positions = [match.start() + i for i, c in enumerate(match.group()) if c.isdecimal()]
        digits = _NOT_DIGIT.sub("", match.group())
        # With a fifth group, the first sixteen digits may be the card and the rest other text.
        for length in (len(digits), 16) if match["extra"] else (len(digits),):
            if luhn_valid(digits[:length]):
                found.append(positions[:length])
                break
    return found


def contains_card_number(text: str) -> bool:
    if len(text) < SHORTEST_CARD_NUMBER and text.isascii():
        return False  # fewer characters than a card has digits (most references): no search
    return bool(_card_spans(_normalised(text)[0]))


def mask_card_numbers(text: str) -> str:
    """The text with every card number cut to at most its first six and last four digits
    (the rest become `*`), the most PCI DSS allows to be kept."""
    normalised, origin = _normalised(text)
    chars = list(text)
    for positions in _card_spans(normalised):
        for position in positions[KEPT_FIRST_DIGITS:-KEPT_LAST_DIGITS]:
            chars[origin[position] if origin else position] = "*"
    return "".join(chars)


def reject_control_characters(field: str, text: str | None) -> None:
    """Refuse control characters that no person types (they would also poison the read
    model: PostgreSQL text cannot hold NUL)."""
    if text and _CONTROL.search(text):
        raise InvalidTextCharacters(
            f"{field} contains control characters (such as NUL); remove them"
        )


def reject_card_numbers(field: str, text: str | None) -> None:
    """Refuse text holding a card number, or control characters."""
    reject_control_characters(field, text)
    if text and contains_card_number(text):
        raise CardNumberRejected(
            f"{field} looks like it holds a full card number; card numbers must never be "
            "recorded. Remove it (at most the first six and last four digits may be kept)."
        )


def require_text(field: str, text: str | None, *, required: bool) -> str:
    """Text a person typed (a reason, a note): trimmed, within the limit, no card number.
    A ComposedText (the ledger's own words around a person's reason, compose_text) has the
    longer limit MAX_COMPOSED_TEXT_LENGTH: its person's part was held to theirs."""
    limit = MAX_COMPOSED_TEXT_LENGTH if isinstance(text, ComposedText) else MAX_TEXT_LENGTH
    text = (text or "").strip()
    if required and not text:
        raise ReasonRequired(f"{field} is required: say why this money moves")
    require_length(field, text, limit)
    reject_card_numbers(field, text)
    return text


# A reason or note the ledger composes of its own words (a file's name, a line, what a link
# pays in: up to MAX_OWN_WORDS_LENGTH of them) and a person's reason (MAX_TEXT_LENGTH, theirs
# to fill): a person's allowed reason is never refused for our words. A composed reason
# itself composed again (an import reversed: each of its statement links undone, saying
# why) keeps within MAX_COMPOSED_TEXT_LENGTH, our outer words cut to the room left.
MAX_OWN_WORDS_LENGTH = 500
MAX_COMPOSED_TEXT_LENGTH = 3 * MAX_TEXT_LENGTH
ELLIPSIS = "..."


class ComposedText(str):
    """Text made by compose_text: require_text holds it to MAX_COMPOSED_TEXT_LENGTH."""

    __slots__ = ()


def compose_text(ours: str, persons: str, after: str = "", *, field: str = "reason") -> str:
    """`ours` + the person's reason + `after` (a closing bracket): the person's reason is
    checked as they typed it (require_text: MAX_TEXT_LENGTH, named as their limit), unless
    composed already; our words are cut (ending in ...) to MAX_OWN_WORDS_LENGTH and to the
    room MAX_COMPOSED_TEXT_LENGTH leaves."""
    if not isinstance(persons, ComposedText):
        persons = require_text(field, persons, required=True)
    room = min(MAX_OWN_WORDS_LENGTH, MAX_COMPOSED_TEXT_LENGTH - len(persons) - len(after))
    return ComposedText(_cut(ours, room) + persons + after)


def own_words(ours: str) -> str:
    """The ledger's own words alone as a reason or note: cut (ending in ...) to
    MAX_OWN_WORDS_LENGTH (a file's name may take 255 of them)."""
    return ComposedText(_cut(ours, MAX_OWN_WORDS_LENGTH))


def _cut(ours: str, room: int) -> str:
    """Our words within `room` characters, ending in ... where cut."""
    if len(ours) <= room:
        return ours
    return ours[: max(room - len(ELLIPSIS), 0)] + ELLIPSIS
