"""What JSON writes as it is: the check the event encoders share."""

from __future__ import annotations

from typing import Any

# What orjson writes exactly as eventsourcing's JSON encoder does (floats are not: "1e+16"
# there, "1e16" here, and infinities differ too).
SCALARS = frozenset({str, int, bool, type(None)})
_TEXT = frozenset({str})


def is_flat(value: dict[Any, Any]) -> bool:
    """Whether a dict has text keys and only text, integer, boolean or None values (most
    event dicts: a provider's details, an allocation line, an import's line entry); checked
    in C, with no Python loop."""
    return SCALARS.issuperset(map(type, value.values())) and _TEXT.issuperset(map(type, value))
