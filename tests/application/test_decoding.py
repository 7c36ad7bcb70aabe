"""The fast decoder gives exactly the library's domain values (issue #9), and the fast
encoder exactly the library's bytes (issue #10).

income_ledger.decoding parses stored events with orjson and builds the events without the
mapper's per-event lookups; replay, `audit verify` and the projections read through it.
These tests hold it equal to eventsourcing's own JSONTranscoder and Mapper: value by value
for every type the transcoder handles (datetimes, decimals, UUIDs, nested in lists and
objects) and what orjson reads differently, then on both backends for every event kind the
ledger records, an upcast event, and the balances a replay gives. The encoder (orjson
when the bytes are sure to be the same) is held to the library's bytes the same ways.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)
from eventsourcing.utils import get_topic
from hypothesis import given, settings
from hypothesis import strategies as st

from application.ledger import CommandContext, IncomeLedger
from income_ledger import demo
from income_ledger.bootstrap import event_reader, replay
from income_ledger.decoding import FastJSONTranscoder, event_decoder
from projections.replay import replay_balances
from tests.application.test_fast_import import import_all
from tests.projections.conftest import random_workload


def _transcoders() -> tuple[JSONTranscoder, FastJSONTranscoder]:
    """Both with eventsourcing's default transcodings, as the ledger registers them."""
    library, fast = JSONTranscoder(), FastJSONTranscoder()
    for transcoder in (library, fast):
        for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
            transcoder.register(transcoding)
    return library, fast


LIBRARY, FAST = _transcoders()


def _same(ours: Any, theirs: Any) -> bool:
    """Equal, of the same types all the way down, keys in the same order."""
    if type(ours) is not type(theirs):
        return False
    if isinstance(ours, dict):
        return list(ours) == list(theirs) and all(_same(ours[k], theirs[k]) for k in ours)
    if isinstance(ours, list):
        return len(ours) == len(theirs) and all(map(_same, ours, theirs))
    if isinstance(ours, float):
        return repr(ours) == repr(theirs)
    if isinstance(ours, datetime):
        return ours == theirs and ours.utcoffset() == theirs.utcoffset()
    return bool(ours == theirs)


def _decodes_alike(data: bytes) -> None:
    assert _same(FAST.decode(data), LIBRARY.decode(data)), data


EXAMPLES = [
    {"at": datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=UTC)},
    {"at": datetime(2026, 3, 31, 9, 30, tzinfo=timezone(timedelta(hours=1)))},
    {"naive": datetime(2026, 3, 31, 9, 30)},
    {"id": uuid4(), "ids": [uuid4(), [uuid4()]], "by_id": {"x": {"id": uuid4()}}},
    {"rate": Decimal("0.175"), "big": Decimal("-12345678901234567890.000001")},
    {"lines": [{"fund": "CT", "at": datetime(2026, 4, 1, tzinfo=UTC), "vat": Decimal("2.5")}]},
    {"pence": 2**63 - 1, "more": 2**64, "less": -(2**70)},  # beyond 64 bits: the library's
    {"float": 0.1, "tiny": 5e-324, "neg_zero": -0.0, "inf": math.inf},
    {"text": "£12.50 — café ☕ \u2028", "empty": "", "none": None, "flags": [True, False]},
    {"_type_": "not a transcoding, three keys", "_data_": 1, "other": 2},
    {"_type_": "only the type"},
    {"_data_": "only the data", "x": 1},
    [],
    [1, "two", None],
    "a bare string",
    7,
]


@pytest.mark.parametrize("value", EXAMPLES, ids=range(len(EXAMPLES)))
def test_each_type_the_transcoder_handles_decodes_as_the_librarys(value: Any) -> None:
    _decodes_alike(LIBRARY.encode(value))


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1, "a": 2}',  # a repeated key: the last one wins in both
        b'{"x": NaN, "y": -Infinity}',  # not JSON; the library reads it
        b'{"s": "\\ud800"}',  # a lone surrogate
        b" \n" + b'{"spaced" : [ 1 , 2 ] }' + b"\n",
        b"[" * 200 + b"]" * 200,
        b'{"n": 9223372036854775807, "m": -9223372036854775808, "u": 18446744073709551615}',
        b'[18446744073709551616, {"x": [-9223372036854775809]}]',  # orjson: floats
        b"-99999999999999999999999",
        b"1.5",
    ],
)
def test_what_orjson_reads_differently_still_decodes_as_the_librarys(data: bytes) -> None:
    _decodes_alike(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"broken": ',
        b"\xff\xfe not utf-8",
        b'{"_type_": "no_such_type", "_data_": "x"}',
        b"[" * 5000 + b"]" * 5000,  # deeper than either nests
    ],
)
def test_what_the_library_refuses_fails_with_the_librarys_error(data: bytes) -> None:
    with pytest.raises(Exception) as theirs:
        LIBRARY.decode(data)
    with pytest.raises(type(theirs.value)):
        FAST.decode(data)
    if b"no_such_type" in data:
        assert theirs.type is TranscodingNotRegisteredError


def test_ordinary_states_are_parsed_by_orjson_not_the_library(monkeypatch) -> None:
    state = LIBRARY.encode({"at": datetime(2026, 3, 31, tzinfo=UTC), "lines": [{"n": 1}]})

    def refuse(self: JSONTranscoder, data: bytes) -> Any:
        raise AssertionError("fell back to the library's decoder")

    monkeypatch.setattr(JSONTranscoder, "decode", refuse)
    assert FAST.decode(state) == {"at": datetime(2026, 3, 31, tzinfo=UTC), "lines": [{"n": 1}]}


_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.uuids()
    | st.decimals(allow_nan=False)
    | st.datetimes(timezones=st.none() | st.just(UTC) | st.timezones())
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.sampled_from(["_type_", "_data_"]), inner)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_any_encoded_value_decodes_as_the_librarys(value: Any) -> None:
    data = LIBRARY.encode({"value": value})
    try:
        expected = LIBRARY.decode(data)
    except Exception as error:  # a member named `_type_` the library cannot read back
        with pytest.raises(type(error)):
            FAST.decode(data)
        return
    assert _same(FAST.decode(data), expected), data


class Colour(StrEnum):
    RED = "red"


class Size(IntEnum):
    BIG = 3


@dataclass(frozen=True)
class Point:
    x: int


class Moment(datetime):
    """A subclass of a registered type: the library has no transcoding for it."""


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def _cycle() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


ENCODED_EXAMPLES = [
    *EXAMPLES,
    {"controls": "".join(map(chr, range(0x20))) + '"\\/\x7f\u2028\u2029\ufeff'},
    {"astral": "\U0001f4b7", "nul": "\x00"},
    {"lone_surrogate": "\ud800"},  # the library's UnicodeEncodeError
    {"tuple": (1, ("a", None)), "list_of_tuples": [(uuid4(),)]},
    {"enum_text": Colour.RED, "enum_number": Size.BIG, "true_int": True},
    {1: "integer key"},
    {None: "none key", "a": 1},
    {"unregistered": Point(1)},
    {"subclass": Moment(2026, 3, 31, tzinfo=UTC)},
    {"object": object()},
    {"deep": _nested(300)},  # deeper than orjson writes
    {"nan": math.nan, "neg_inf": -math.inf, "huge": 1e16, "small": 1e-7},
    {"edges": [2**64 - 1, -(2**63), 2**64, -(2**63) - 1]},
    _cycle(),
    Decimal("1.5"),
    datetime(2026, 3, 31, tzinfo=UTC),
    uuid4(),
]


def _encodes_alike(value: Any) -> None:
    """The same bytes, or the same error."""
    try:
        expected = LIBRARY.encode(value)
    except Exception as error:
        with pytest.raises(type(error)):
            FAST.encode(value)
        return
    assert FAST.encode(value) == expected


@pytest.mark.parametrize("value", ENCODED_EXAMPLES, ids=range(len(ENCODED_EXAMPLES)))
def test_each_value_encodes_as_the_librarys(value: Any) -> None:
    _encodes_alike(value)


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_any_value_encodes_as_the_librarys(value: Any) -> None:
    _encodes_alike({"value": value})
    _encodes_alike([value, (value,)])


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(codec=None, exclude_categories=())))
def test_any_text_encodes_as_the_librarys(text: str) -> None:
    _encodes_alike({"text": text, text: [text]})


@settings(max_examples=500, deadline=None)
@given(st.datetimes(timezones=st.just(UTC)))
def test_any_utc_datetime_encodes_as_the_librarys(moment: datetime) -> None:
    _encodes_alike({"at": moment, "times": [moment]})


class DayFirst(DatetimeAsISO):
    """Another transcoding of datetimes, under the library's name."""

    def encode(self, obj: datetime) -> str:
        return obj.strftime("%d/%m/%Y %H:%M")


def test_a_datetime_transcoding_of_its_own_is_the_one_used() -> None:
    library, fast = JSONTranscoder(), FastJSONTranscoder()
    for transcoder in (library, fast):
        transcoder.register(DatetimeAsISO())
        transcoder.register(DayFirst())
    moment = datetime(2026, 3, 31, 9, 30, tzinfo=UTC)
    assert fast.encode({"at": moment}) == library.encode({"at": moment})
    assert b"31/03/2026 09:30" in fast.encode({"at": moment})


def test_ordinary_states_are_written_by_orjson_not_the_library(monkeypatch) -> None:
    state = {"at": datetime(2026, 3, 31, tzinfo=UTC), "id": uuid4(), "lines": [{"n": 1}]}
    expected = LIBRARY.encode(state)

    def refuse(self: JSONTranscoder, obj: Any) -> bytes:
        raise AssertionError("fell back to the library's encoder")

    monkeypatch.setattr(JSONTranscoder, "encode", refuse)
    assert FAST.encode(state) == expected


# ---- stored events, both backends ---------------------------------------------------------


class Sample(Aggregate):
    """An aggregate whose event carries every type the transcoder handles, nested."""

    class Made(Aggregate.Created):
        class_version = 2
        amount_pence: int
        refs: list[UUID]
        rates: dict[str, Decimal]
        due: list[dict[str, Any]]

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["amount_pence"] = int(Decimal(state.pop("amount")) * 100)

    @event(Made)
    def __init__(
        self,
        amount_pence: int,
        refs: list[UUID],
        rates: dict[str, Decimal],
        due: list[dict[str, Any]],
    ) -> None:
        self.amount_pence = amount_pence


def _library_mapper(ledger: IncomeLedger) -> Mapper[Any]:
    """eventsourcing's own JSONTranscoder and Mapper, with the ledger's transcodings."""
    transcoder = JSONTranscoder()
    ledger.register_transcodings(transcoder)
    return Mapper(transcoder=transcoder)


def _record_history(ledger: IncomeLedger) -> None:
    ctx = CommandContext("officer:decoding")
    demo.record_demo(ledger, demo.plan_demo(ledger, days=3, receipts_per_day=15, seed=11))
    random_workload(ledger, seed=11, receipts=20)
    ledger.disable_fund("PCN", ctx, "no more parking")
    ledger.enable_fund("PCN", ctx, "parking again")


def _library_events(ledger: IncomeLedger) -> list[tuple[int, Any]]:
    """Every event as the library alone reads and decodes it."""
    mapper = _library_mapper(ledger)
    rows = ledger.recorder.select_notifications(start=None, limit=100_000)
    return [(row.id, mapper.to_domain_event(row)) for row in rows]


def test_every_recorded_event_decodes_as_the_librarys(ledger) -> None:
    _record_history(ledger)
    sample = Sample(
        amount_pence=1250,
        refs=[uuid4(), uuid4()],
        rates={"standard": Decimal("0.20"), "reduced": Decimal("0.05")},
        due=[{"at": datetime(2026, 3, 31, tzinfo=UTC), "ref": uuid4(), "rate": Decimal("1")}],
    )
    ledger.save(sample)
    # The same event as an older release stored it (class version 1, pounds as text).
    old_id = uuid4()
    v1_state = LIBRARY.encode(
        {
            "timestamp": datetime(2026, 3, 31, 9, 30, tzinfo=UTC),
            "originator_topic": get_topic(Sample),
            "amount": "3.25",
            "refs": [],
            "rates": {},
            "due": [],
        }
    )
    ledger.recorder.insert_events([StoredEvent(old_id, 1, get_topic(Sample.Made), v1_state)])

    assert isinstance(ledger.mapper.transcoder, FastJSONTranscoder)
    reader = event_reader(ledger)
    ours = reader.events(0, 100_000)
    theirs = _library_events(ledger)
    assert [p for p, _ in ours] == [p for p, _ in theirs]
    kinds = set()
    for (_, mine), (_, library) in zip(ours, theirs, strict=True):
        assert type(mine) is type(library)
        assert _same(mine.__dict__, library.__dict__), type(library).__qualname__
        kinds.add(type(library).__qualname__)
    assert {"Payment.Received", "Payment.Allocated", "Payment.Refunded"} <= kinds
    assert {"Payment.Transferred", "FundChart.FundDisabled", "Sample.Made"} <= kinds
    upcast = next(e for _, e in ours if e.originator_id == old_id)
    assert upcast.amount_pence == 325 and not hasattr(upcast, "amount")


def test_a_replay_gives_the_balances_of_the_librarys_decoding(ledger, settings) -> None:
    _record_history(ledger)
    theirs = _library_events(ledger)
    middle = theirs[len(theirs) // 2][1].timestamp
    late = datetime(2100, 1, 1, tzinfo=UTC)
    for as_at, known_at, fund in [(late, None, None), (late, middle, None), (middle, None, "CT")]:
        ours = replay(settings, ledger, as_at=as_at, known_at=known_at, fund_code=fund)
        expected = replay_balances(theirs, as_at=as_at, known_at=known_at, fund_code=fund)
        assert ours == expected
        assert list(ours.accounts) == list(expected.accounts)
    assert ours.events_read == len(theirs) and ours.funds


def test_an_undecodable_event_raises_the_librarys_error(ledger) -> None:
    ledger.recorder.insert_events(
        [StoredEvent(uuid4(), 1, get_topic(Sample.Made), b'{"timestamp": ')]
    )
    row = event_reader(ledger).rows(None, 100)[-1]
    with pytest.raises(Exception) as theirs:
        _library_mapper(ledger).to_domain_event(row)
    with pytest.raises(type(theirs.value), match="Failed to deserialise"):
        event_decoder(ledger.mapper)(row)


def test_every_stored_state_is_the_librarys_encoding(ledger) -> None:
    """What the ledger stored (written by the fast encoder) is byte for byte what the
    library's own mapper writes for the same events: receipts, allocations, refunds,
    transfers, fund changes, import rules and imported files of every kind."""
    _record_history(ledger)
    import_all(ledger)
    assert isinstance(ledger.mapper.transcoder, FastJSONTranscoder)
    library = _library_mapper(ledger)
    rows = ledger.recorder.select_notifications(start=None, limit=100_000)
    topics = set()
    for row in rows:
        event = library.to_domain_event(row)
        assert library.to_stored_event(event).state == row.state, row.topic
        topics.add(row.topic.rsplit(":", 1)[-1])
    assert {"Payment.Received", "Payment.Allocated", "Payment.Transferred"} <= topics
    assert {"ImportBatch.Imported", "ImportRulebook.RuleAdded", "Payment.Reversed"} <= topics
