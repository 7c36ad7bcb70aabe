"""A new receipt's events and their stored form made in one step (issues #9 and #10).

`record_payments` and imports store thousands of new receipts at once. Making each one's
Received and Allocated events through their dataclass constructors and then encoding each
through eventsourcing's mapper and transcoder (a dict copy and a walk of every value per
event) cost about 30 us of a receipt's 80-90 us of CPU (timeit, loaded machine).
`ReceiptEncoder` makes the same events and the same stored events from
`Payment.receipt_fields` directly (about 23 us): each event's state is built once, in the
event's own field order, and becomes both the event's attributes (as the mapper's decoder
makes an event it reads: the constructor's check that the id is a UUID holds by
construction, `payment_id_for`) and, written by orjson, its stored state.

The stored events are byte for byte the mapper's for the same events (topic, originator id
and version, and the state's JSON with its keys in order and datetimes as the library's
`datetime_iso` objects): tests/application/test_receipt_encoding.py holds them equal for
every event it writes on random receipts. The shortcut is taken only where that holds: the
ledger's mapper is the library's (its `to_stored_event` not overridden) with no cipher and
no compressor, its transcoder is the library's JSON one (or a subclass: the ledger's
FastJSONTranscoder) with the library's datetime transcoding, and every value is one orjson writes as the library's encoder does: exact text, integers,
booleans and None, UTC datetimes in the event's own fields (orjson writes them as
`isoformat()`, as income_ledger.decoding relies on too), dicts with text keys and lists of
those. Anything else (a float, a UUID or a datetime among a provider's details, a lone
surrogate, an integer beyond 64 bits) is encoded by the mapper itself.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import orjson
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, StoredEvent
from eventsourcing.utils import get_topic

from domain.idempotent import running_command
from domain.payment import Payment
from runtime.plain import SCALARS as _SCALARS
from runtime.plain import is_flat

_DATETIME = DatetimeAsISO.name


class _NotPlain(Exception):
    """A value left to the mapper to encode."""


def _require_plain(value: Any) -> None:
    """`value`, inside an event's field, is JSON that orjson writes as the library's encoder
    does: text, integers, booleans and None in dicts with text keys and lists (no datetime:
    orjson writes it bare, the library as a `datetime_iso` object)."""
    kind = type(value)
    if kind in _SCALARS:
        return
    if kind is dict:
        # Most are flat (a provider's details, an allocation line): checked in C.
        if is_flat(value):
            return
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlain
            _require_plain(item)
    elif kind is list:
        for item in value:
            _require_plain(item)
    else:
        raise _NotPlain


class _EventKind:
    """What making and encoding one event class needs, worked out once: its topic, class
    version, and its state's fields in the order its constructor sets them (and the mapper
    writes them), with their defaults."""

    __slots__ = ("class_version", "cls", "defaults", "required", "required_names", "topic")

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls
        self.topic = get_topic(cls)
        self.class_version: int = getattr(cls, "class_version", 1)
        fields = [
            f
            for f in dataclasses.fields(cls)
            if f.name not in ("originator_id", "originator_version")
        ]
        self.defaults = {
            f.name: _REQUIRED if f.default is dataclasses.MISSING else f.default for f in fields
        }
        self.required = tuple(f.name for f in fields if f.default is dataclasses.MISSING)
        self.required_names = frozenset(self.required)

    def state(self, values: dict[str, Any]) -> dict[str, Any]:
        """The event's state in field order (the constructor's TypeError for a missing or
        unknown field)."""
        state = {**self.defaults, **values}
        if len(state) != len(self.defaults):
            unknown = sorted(set(state) - set(self.defaults))
            raise TypeError(f"{self.cls.__qualname__} has no fields {unknown}")
        # Every required field given: one set comparison in C, not a loop over the names.
        if not values.keys() >= self.required_names:
            missing = next(name for name in self.required if name not in values)
            raise TypeError(f"{self.cls.__qualname__} needs {missing!r}")
        return state

    def event(self, originator_id: Any, version: int, state: dict[str, Any]) -> Any:
        """The event, made as the mapper's decoder makes one it reads."""
        event = object.__new__(self.cls)
        object.__setattr__(
            event,
            "__dict__",
            {"originator_id": originator_id, "originator_version": version, **state},
        )
        return event

    def state_bytes(self, state: dict[str, Any]) -> bytes:
        """The state as the library's JSON transcoder writes it; _NotPlain when that is not
        sure (then the mapper writes it)."""
        written = {}
        for name, value in state.items():
            kind = type(value)
            if kind in _SCALARS:
                written[name] = value
            elif kind is datetime and value.tzinfo is UTC:
                # orjson writes a UTC datetime as its isoformat(), as the library's
                # DatetimeAsISO does (income_ledger.decoding relies on the same).
                written[name] = {"_type_": _DATETIME, "_data_": value}
            else:
                _require_plain(value)
                written[name] = value
        if self.class_version > 1:
            written["class_version"] = self.class_version
        return orjson.dumps(written)


_REQUIRED = object()
_RECEIVED = _EventKind(Payment.Received)
_ALLOCATED = _EventKind(Payment.Allocated)
_PAYMENT_TOPIC = get_topic(Payment)


class ReceiptEncoder:
    """Makes a new receipt's events (as `Payment.receipt_events` does) and their stored
    events (as the ledger's mapper encodes them) from `Payment.receipt_fields`."""

    def __init__(self, mapper: Mapper[Any]) -> None:
        self.mapper = mapper
        transcoder = mapper.transcoder
        self.fast = (
            # A mapper class of an operator's own (eventsourcing's MAPPER_TOPIC) may store
            # events its own way.
            type(mapper).to_stored_event is Mapper.to_stored_event
            and mapper.cipher is None
            and mapper.compressor is None
            and isinstance(transcoder, JSONTranscoder)
            and type(transcoder.types.get(datetime)) is DatetimeAsISO
        )

    def encode(
        self, received: dict[str, Any], allocated: dict[str, Any] | None
    ) -> tuple[list[Payment.Event], tuple[StoredEvent, ...]]:
        """The receipt's events and their stored events (`received` and `allocated` are
        `Payment.receipt_fields`' answer; `received` keeps its `id`)."""
        payment_id = received["id"]
        fields = {**received, "originator_topic": _PAYMENT_TOPIC}
        del fields["id"]
        fields["timestamp"] = Payment.Received.create_timestamp()
        states = [(_RECEIVED, Payment.INITIAL_VERSION, _RECEIVED.state(fields))]
        if allocated is not None:
            key = running_command()  # what `record` stamps on the event
            fields = {
                **allocated,
                "timestamp": Payment.Allocated.create_timestamp(),
                "idempotency_key": key.idempotency_key,
                "fingerprint": key.fingerprint,
            }
            states.append((_ALLOCATED, Payment.INITIAL_VERSION + 1, _ALLOCATED.state(fields)))
        events = [kind.event(payment_id, version, state) for kind, version, state in states]
        if self.fast:
            try:
                stored = tuple(
                    StoredEvent(payment_id, version, kind.topic, kind.state_bytes(state))
                    for kind, version, state in states
                )
            except (_NotPlain, orjson.JSONEncodeError):
                pass  # the mapper writes it, or raises its own error
            else:
                return events, stored
        return events, tuple(map(self.mapper.to_stored_event, events))
