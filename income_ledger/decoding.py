"""Decoding stored events fast: for replay, `audit verify` and the projections (issue #9).

These read every stored event, and the standard library's `json` with eventsourcing's object
hook, then the mapper's own work per event, were most of a replay (docs/performance.md).

`FastJSONTranscoder` is eventsourcing's JSONTranscoder (same encoder, same registered
transcodings) whose `decode` gives the same values from the same bytes: orjson parses, then
one walk hands every two-key object to the library's own object hook, innermost first, as
`json` does with it, so `{"_type_": name, "_data_": value}` becomes the registered type's
value (or the library's error for an unknown name). Whatever orjson refuses or would read
differently (any float, since orjson makes one of an integer beyond 64 bits; NaN, lone
surrogates, nesting deeper than it allows, malformed or non-UTF-8 text, a state that is not
bytes) goes to the library's decoder, which decodes it or raises its own error. The composition root selects it with
eventsourcing's TRANSCODER_TOPIC setting.

`event_decoder` does what `Mapper.to_domain_event` does, with each topic's class, id
convertor and class version looked up once; a stored event it cannot decode goes to the
mapper itself, so errors are the library's. tests/application/test_decoding.py holds both
equal to the library's for every kind of event, upcasting included.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from eventsourcing.persistence import (
    DatetimeAsISO,
    JSONTranscoder,
    Mapper,
    Transcoding,
    find_id_convertor,
)
from eventsourcing.utils import resolve_topic

from runtime.plain import SCALARS as _SCALARS
from runtime.plain import is_flat

TRANSCODER_TOPIC = "income_ledger.decoding:FastJSONTranscoder"


class FastJSONTranscoder(JSONTranscoder):
    """eventsourcing's JSONTranscoder whose `decode` parses with orjson and whose
    `encode` writes with it, byte for byte as the library does."""

    def __init__(self) -> None:
        super().__init__()
        self._reviver: _Reviver | None = None
        self._utc_datetimes = False

    def register(self, transcoding: Transcoding) -> None:
        super().register(transcoding)
        self._reviver = None
        # Datetimes are written as the library's own transcoding writes them (not another's).
        self._utc_datetimes = type(self.types.get(datetime)) is DatetimeAsISO

    def encode(self, obj: Any) -> bytes:
        """The library's bytes for `obj`, written by orjson when they are sure to be the
        same: `obj` converted first into what the library's encoder would write (each value
        of a registered type as its `{"_type_", "_data_"}` object, tuples as lists), built
        only of exact dicts with text keys, lists, text, integers, booleans and None, which
        orjson writes as the library does (text escaped alike, no spaces, not ASCII-only).
        Anything else (a float, a subclass of a JSON type, an unregistered type, an integer
        beyond 64 bits, a lone surrogate, a cycle) goes to the library's encoder, which
        encodes it or raises its own error."""
        try:
            return orjson.dumps(self._plain(obj))
        except (_NotPlain, TypeError, RecursionError):  # orjson's errors are TypeErrors
            return super().encode(obj)

    def _plain(self, value: Any) -> Any:
        kind = type(value)
        if kind is dict:
            # Most dicts are flat (an import's 100,000 line entries): written as they are.
            if is_flat(value):
                return value
            plain = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise _NotPlain
                item_kind = type(item)
                if item_kind in _SCALARS:
                    plain[key] = item
                elif item_kind is datetime and item.tzinfo is UTC and self._utc_datetimes:
                    plain[key] = {"_type_": DatetimeAsISO.name, "_data_": item}  # as below
                else:
                    plain[key] = self._plain(item)
            return plain
        if kind in _SCALARS:
            return value
        if kind is list or kind is tuple:
            return [item if type(item) in _SCALARS else self._plain(item) for item in value]
        if kind is datetime and value.tzinfo is UTC and self._utc_datetimes:
            # orjson writes a UTC datetime as its isoformat(), in C (checked over the whole
            # range of datetimes): the ledger's times are all UTC.
            return {"_type_": DatetimeAsISO.name, "_data_": value}
        transcoding = self.types.get(kind)
        # The library's encoder writes subclasses of its own types itself, registered or not.
        if transcoding is None or isinstance(value, _WRITTEN_AS_JSON):
            raise _NotPlain
        return {"_type_": transcoding.name, "_data_": self._plain(transcoding.encode(value))}

    def decode(self, data: bytes) -> Any:
        if type(data) is not bytes:
            return super().decode(data)
        reviver = self._reviver or self._new_reviver()
        try:
            parsed = orjson.loads(data)
            kind = type(parsed)
            if kind is dict:
                return reviver.revive(parsed)
            if kind is list:
                reviver.revive_items(parsed)
            elif kind is float:
                raise _FloatFound
            return parsed
        except (orjson.JSONDecodeError, RecursionError, _FloatFound):
            return super().decode(data)

    def _new_reviver(self) -> _Reviver:
        self._reviver = _Reviver(self)
        return self._reviver


_WRITTEN_AS_JSON = (str, int, float, list, tuple, dict)


class _NotPlain(Exception):
    """A value the library's encoder is left to write."""


class _FloatFound(Exception):
    """orjson reads an integer beyond 64 bits as a float, where `json` keeps the integer:
    a state with any float in it is left to the library (the ledger stores none: money is
    integer pence)."""


class _Reviver:
    """Makes parsed JSON what the library's object hook makes it, in place."""

    __slots__ = ("decoders", "hook")

    def __init__(self, transcoder: JSONTranscoder) -> None:
        self.hook = transcoder._decode_obj
        self.decoders = {name: t.decode for name, t in transcoder.names.items()}

    def revive(self, value: dict[str, Any]) -> Any:
        """An object, its members revived first; the hook only ever changes one of two keys."""
        for key, item in value.items():
            kind = type(item)
            if kind is dict:
                value[key] = self.revive_member(item)
            elif kind is list:
                self.revive_items(item)
            elif kind is float:
                raise _FloatFound
        return self.hook(value) if len(value) == 2 else value

    def revive_member(self, item: dict[str, Any]) -> Any:
        # Most are a registered value with text data (a datetime): nothing inside to revive,
        # and the hook would make it exactly this.
        if len(item) == 2 and "_data_" in item and type(item["_data_"]) is str:
            decode = self.decoders.get(item.get("_type_"))
            if decode is not None:
                return decode(item["_data_"])
        return self.revive(item)

    def revive_items(self, items: list[Any]) -> None:
        for index, item in enumerate(items):
            kind = type(item)
            if kind is dict:
                items[index] = self.revive_member(item)
            elif kind is list:
                self.revive_items(item)
            elif kind is float:
                raise _FloatFound


EventClass = tuple[type[Any], Callable[[Any], Any], int]


def event_decoder(mapper: Mapper[Any]) -> Callable[[Any], Any]:
    """`mapper.to_domain_event` for stored events (anything with `topic`, `state`,
    `originator_id` and `originator_version`), the same events, faster."""
    if mapper.cipher is not None or mapper.compressor is not None:
        return mapper.to_domain_event
    decode = mapper.transcoder.decode
    classes: dict[tuple[str, type[Any]], EventClass] = {}
    new = object.__new__
    set_attribute = object.__setattr__

    def to_domain_event(stored: Any) -> Any:
        originator_id = stored.originator_id
        try:
            cls, convert, class_version = classes[stored.topic, type(originator_id)]
        except KeyError:
            try:
                known = _event_class(stored.topic, type(originator_id))
            except Exception:
                return mapper.to_domain_event(stored)
            cls, convert, class_version = classes[stored.topic, type(originator_id)] = known
        try:
            state = decode(stored.state)
        except Exception:
            return mapper.to_domain_event(stored)  # raises the library's own error
        if type(state) is not dict:
            return mapper.to_domain_event(stored)
        state["originator_id"] = convert(originator_id)
        state["originator_version"] = stored.originator_version
        if class_version > 1 or "class_version" in state:
            from_version = state.pop("class_version", 1)
            while from_version < class_version:
                getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
                from_version += 1
        event = new(cls)
        set_attribute(event, "__dict__", state)
        return event

    return to_domain_event


def _event_class(topic: str, id_type: type[Any]) -> EventClass:
    cls = resolve_topic(topic)
    convert = find_id_convertor(cls, cast(Hashable, id_type))
    return cls, convert, getattr(cls, "class_version", 1)
