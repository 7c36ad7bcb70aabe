"""`ReceiptEncoder` makes a new receipt's events and stored events in one step (#9, #10).
For every event it writes (Received and Allocated) and random receipts, its events must be
the ones `Payment.receipt_events` makes and its stored events the ledger mapper's for them,
byte for byte: same topic, id, version and state (keys in order, timestamps included), so
that replay, audit verify, the hash chain and the projections read the same bytes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import eventsourcing.domain
import pytest
from eventsourcing.compressor import ZlibCompressor
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    UUIDAsHex,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import domain.payment
from application.receipt_encoding import ReceiptEncoder
from domain.errors import LedgerError
from domain.funds import Match, SuspenseReason
from domain.idempotent import CommandKey, IdempotentCommands
from domain.payment import Channel, Payment
from domain.sample_chart import SAMPLE_FUNDS

NOW = datetime.now(UTC)
texts = st.text(max_size=40)
optional_texts = st.none() | texts
# What a payment provider may report: any JSON, and values the library writes its own way
# (floats, UUIDs, datetimes, integers beyond 64 bits, tuples).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | texts
    | st.uuids()
    | st.datetimes(timezones=st.just(UTC)),
    lambda inner: (
        st.lists(inner, max_size=3) | st.tuples(inner) | st.dictionaries(texts, inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def receipts(draw: st.DrawFn) -> dict[str, Any]:
    """`Payment.receipt_fields`' arguments for a random receipt: allocated or in suspense,
    any channel, with or without provider details, counter, rule and keys."""
    fund = draw(st.none() | st.sampled_from(SAMPLE_FUNDS))
    rule = draw(st.none() | st.fixed_dictionaries({"id": texts, "version": st.integers(1, 99)}))
    match = Match(
        fund.code if fund else None,
        None if fund else draw(st.sampled_from(SuspenseReason)),
        draw(texts),
        rule,
    )
    ago = draw(st.timedeltas(timedelta(0), timedelta(days=3000)))
    zone = draw(st.sampled_from([UTC, timezone(timedelta(hours=1))]))
    return {
        "channel": draw(st.sampled_from(Channel)),
        "amount_pence": draw(st.integers(1, 10**9)),
        "received_at": (NOW - ago).astimezone(zone),
        "reference": draw(st.text(min_size=1, max_size=20)),
        "fund_hint": draw(st.none() | st.text(max_size=8)),
        "external_id": draw(optional_texts),
        "match": match,
        "fund": fund,
        "actor": draw(st.text(min_size=1, max_size=20)),
        "idempotency_key": draw(optional_texts),
        "fingerprint": draw(st.none() | st.text("0123456789abcdef", min_size=64, max_size=64)),
        "external_id_from_provider": draw(st.booleans()),
        "provider_details": draw(st.none() | st.dictionaries(texts, json_values, max_size=4)),
        "counter": draw(st.none() | st.tuples(texts, texts)),
        "now": NOW + timedelta(seconds=1),
    }


@contextmanager
def clock(moments: list[datetime]) -> Iterator[None]:
    """eventsourcing's event clock reading these moments, one per event made, and the
    random id of a receipt with neither external id nor key always the same one."""
    ticks = iter(moments)
    original = eventsourcing.domain.datetime_now_with_tzinfo, domain.payment.uuid4
    eventsourcing.domain.datetime_now_with_tzinfo = lambda: next(ticks)
    domain.payment.uuid4 = lambda: RANDOM_ID
    try:
        yield
    finally:
        eventsourcing.domain.datetime_now_with_tzinfo, domain.payment.uuid4 = original


RANDOM_ID = uuid.uuid4()


def library_mapper(**options: Any) -> Mapper[Any]:
    """A mapper with the library's own JSON transcoder (and the options given: a
    compressor), its transcodings registered as an Application registers them."""
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder, **options)


def both_ways(mapper: Any, arguments: dict[str, Any], moments: list[datetime]) -> tuple:
    """(the normal path's events and stored events, the encoder's), on the same clock."""
    try:
        with clock(list(moments)):
            events = Payment.receipt_events(**arguments)
    except LedgerError:
        assume(False)  # refused by the receipt's own rules, the same on both paths
    normal = tuple(map(mapper.to_stored_event, events))
    with clock(list(moments)):
        made, stored = ReceiptEncoder(mapper).encode(*Payment.receipt_fields(**arguments))
    return (events, normal), (made, stored)


def same_events(made: list[Any], events: list[Any]) -> None:
    assert [type(e) for e in made] == [type(e) for e in events]
    assert made == events
    # Field for field and in the same order: what the mapper of either would write.
    assert [list(vars(e).items()) for e in made] == [list(vars(e).items()) for e in events]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(arguments=receipts(), moments=st.lists(st.datetimes(), min_size=2, max_size=2))
def test_stored_events_are_the_mappers(empty_ledger, arguments, moments) -> None:
    """The ledger's own mapper (its fast transcoder) and the library's plain one."""
    moments = [moment.replace(tzinfo=UTC) for moment in moments]
    for mapper in (empty_ledger.mapper, library_mapper()):
        (events, normal), (made, stored) = both_ways(mapper, arguments, moments)
        same_events(made, events)
        assert all(type(s) is StoredEvent for s in stored)
        assert stored == normal
        assert [s.state for s in stored] == [s.state for s in normal]  # bytes, key order
        assert {type(e) for e in events} <= {Payment.Received, Payment.Allocated}


def test_every_event_it_writes_is_covered(empty_ledger) -> None:
    """An allocated receipt makes both events the encoder writes, a suspense one only the
    first; each stored as the mapper stores it, inside a running command too."""
    mapper = empty_ledger.mapper
    fund = SAMPLE_FUNDS[0]
    base = {
        "channel": Channel.ALLPAY,
        "amount_pence": 1_234,
        "received_at": NOW - timedelta(days=1),
        "reference": "REF1",
        "fund_hint": None,
        "external_id": "ext-1",
        "actor": "officer",
    }
    allocated = base | {"match": Match(fund.code, None, "matched"), "fund": fund}
    suspense = base | {"match": Match(None, SuspenseReason.UNKNOWN_FUND, "no fund"), "fund": None}
    moments = [NOW, NOW + timedelta(microseconds=1)]
    kinds = []
    for arguments in (allocated, suspense):
        with IdempotentCommands().running(CommandKey("key-1", "f" * 64)):
            (events, normal), (made, stored) = both_ways(mapper, arguments, moments)
        same_events(made, events)
        assert stored == normal
        kinds.append([type(e) for e in made])
    assert kinds == [[Payment.Received, Payment.Allocated], [Payment.Received]]


def test_plain_receipts_do_not_go_through_the_mapper(empty_ledger, monkeypatch) -> None:
    """The encoder writes a receipt's state itself (the mapper is only its fallback)."""
    mapper = empty_ledger.mapper
    encoder = ReceiptEncoder(mapper)
    assert encoder.fast
    fund = SAMPLE_FUNDS[0]
    received, allocated = Payment.receipt_fields(
        channel=Channel.GOVUK_PAY,
        amount_pence=500,
        received_at=NOW,
        reference="R1",
        fund_hint=None,
        external_id="pay-1",
        match=Match(fund.code, None, "matched", {"id": "rule", "version": 2}),
        fund=fund,
        actor="officer",
        provider_details={"fee": 12, "card_brand": "Visa", "nested": [{"a": None}]},
        counter=("HQ", "T1"),
    )
    monkeypatch.setattr(mapper, "to_stored_event", lambda event: pytest.fail("mapper used"))
    _, stored = encoder.encode(received, allocated)
    assert [s.originator_version for s in stored] == [1, 2]
    # A float among the details is the library's to write.
    monkeypatch.undo()
    received["provider_details"] = {"rate": 1e16, "id": uuid.uuid4()}
    events, stored = encoder.encode(received, allocated)
    assert stored == tuple(map(mapper.to_stored_event, events))


def test_a_compressed_store_is_left_to_the_mapper() -> None:
    """With a compressor (or a cipher) configured the state is not plain JSON: the encoder
    makes the events and leaves their encoding to the mapper."""
    mapper = library_mapper(compressor=ZlibCompressor())
    encoder = ReceiptEncoder(mapper)
    assert not encoder.fast
    received, allocated = Payment.receipt_fields(
        channel=Channel.CASH,
        amount_pence=100,
        received_at=NOW,
        reference="R2",
        fund_hint=None,
        external_id=None,
        match=Match(None, SuspenseReason.UNKNOWN_FUND, "no fund"),
        fund=None,
        actor="officer",
    )
    events, stored = encoder.encode(received, allocated)
    assert stored == tuple(map(mapper.to_stored_event, events))
    assert mapper.to_domain_event(stored[0]) == events[0]


class _StampedMapper(Mapper[Any]):
    """A mapper of an operator's own (eventsourcing's MAPPER_TOPIC setting) that writes
    events its own way."""

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        stored = super().to_stored_event(domain_event)
        return StoredEvent(
            stored.originator_id, stored.originator_version, stored.topic, b"!" + stored.state
        )


def test_a_mapper_of_its_own_is_left_to_write() -> None:
    """A mapper class other than the library's may store events its own way: the encoder
    makes the events and leaves their encoding to it."""
    mapper = _StampedMapper(transcoder=library_mapper().transcoder)
    encoder = ReceiptEncoder(mapper)
    assert not encoder.fast
    fund = SAMPLE_FUNDS[0]
    received, allocated = Payment.receipt_fields(
        channel=Channel.CASH,
        amount_pence=100,
        received_at=NOW,
        reference="R3",
        fund_hint=None,
        external_id=None,
        match=Match(fund.code, None, "matched"),
        fund=fund,
        actor="officer",
    )
    events, stored = encoder.encode(received, allocated)
    assert stored == tuple(map(mapper.to_stored_event, events))
