"""The hash chain's mechanics on synthetic rows: encoding, seals per UK business date, exactly
once, and what verification reports. The real event store is in test_tampering.py."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from uuid import UUID

import pytest
from eventsourcing.persistence import Notification
from sqlalchemy import select

from domain.errors import InvalidRequest
from projections import chain as chain_module
from projections.chain import (
    CHAIN_VERSION,
    GENESIS_LINK,
    AuditChain,
    Seal,
    audit_chain,
    canonical_row,
    create_chain_tables,
    next_link,
    read_seals,
    stored_seals,
    verify_chain,
)
from projections.runner import projection_engine
from projections.schema import tracking_metadata

ID = UUID("00000000-0000-0000-0000-000000000001")
MONDAY = datetime(2026, 3, 30, 9, 0, tzinfo=UTC)  # UK summer time: UTC+1


def row(position: int, state: bytes = b"{}", topic: str = "t:E", version: int = 1):
    return Notification(
        id=position, originator_id=ID, originator_version=version, topic=topic, state=state
    )


class Store:
    """Rows in memory, read as the event store pages them; times decide the seal dates."""

    def __init__(self, positions, start=MONDAY, step=timedelta(minutes=1)) -> None:
        self.rows = {p: row(p, state=f'{{"n":{p}}}'.encode(), version=p) for p in positions}
        self.times = {p: start + i * step for i, p in enumerate(positions)}
        self.reads = 0

    def source(self, after: int | None, limit: int) -> list[Notification]:
        self.reads += 1
        return [self.rows[p] for p in sorted(self.rows) if after is None or p > after][:limit]

    def decode(self, stored: Notification) -> SimpleNamespace:
        return SimpleNamespace(timestamp=self.times[stored.id])


@pytest.fixture
def engine(tmp_path):
    engine = projection_engine(f"sqlite:///{tmp_path / 'chain.db'}")
    create_chain_tables(engine)
    tracking_metadata.create_all(engine)
    yield engine
    engine.dispose()


def chained(engine, store: Store, page_size: int = 4) -> AuditChain:
    chain = AuditChain(engine, store.source, store.decode, page_size=page_size)
    chain.catch_up()
    return chain


def verify(engine, store: Store, seals=()):
    return verify_chain(
        engine,
        store.source,
        store_position=max(store.rows, default=0),
        seals=seals,
        page_size=3,
    )


def test_each_field_is_length_prefixed_so_no_two_rows_encode_alike() -> None:
    assert canonical_row(row(1, state=b"ab", topic="t")) != canonical_row(
        row(1, state=b"b", topic="ta")
    )
    assert canonical_row(row(12, version=3)) != canonical_row(row(1, version=23))
    link = next_link(bytes.fromhex(GENESIS_LINK), row(1))
    assert link == hashlib.sha256(bytes.fromhex(GENESIS_LINK) + canonical_row(row(1))).digest()
    assert hashlib.sha256(CHAIN_VERSION.encode()).hexdigest() == GENESIS_LINK


def test_links_follow_the_rows_and_gaps_are_not_tampering(engine) -> None:
    store = Store([1, 2, 5, 6, 7, 9, 10, 11, 12, 13])  # gaps, as PostgreSQL leaves them
    chain = chained(engine, store)
    assert chain.position() == 13
    with engine.connect() as connection:
        links = connection.execute(select(audit_chain).order_by(audit_chain.c.position)).all()
    assert [link.position for link in links] == sorted(store.rows)
    expected = bytes.fromhex(GENESIS_LINK)
    for link in links:
        expected = next_link(expected, store.rows[link.position])
        assert link.link_sha256 == expected.hex()
    report = verify(engine, store)
    assert report.ok and report.events_checked == 10 and report.head_link == expected.hex()


def test_each_kind_of_tampering_is_found_at_its_first_position(engine) -> None:
    store = Store(range(1, 21))
    chained(engine, store)
    store.rows[7] = dataclasses.replace(store.rows[7], state=b'{"n":700}')
    del store.rows[11]
    store.rows[15] = dataclasses.replace(store.rows[15], topic="t:Forged")
    report = verify(engine, store)
    assert not report.ok
    assert [(f.position, f.kind) for f in report.findings] == [
        (7, "altered"),
        (11, "missing"),
        (15, "altered"),
    ]
    assert report.first_mismatch.position == 7


def test_a_row_slipped_into_a_gap_is_unexpected(engine) -> None:
    store = Store([1, 2, 3, 5, 6])
    chained(engine, store)
    store.rows[4] = row(4, state=b'{"forged":true}', version=99)
    report = verify(engine, store)
    assert [(f.position, f.kind) for f in report.findings] == [(4, "unexpected")]


def test_rows_after_the_chain_head_are_reported_as_not_yet_chained(engine) -> None:
    store = Store(range(1, 6))
    chained(engine, store)
    store.rows[6] = row(6, version=6)
    store.times[6] = MONDAY + timedelta(hours=1)
    report = verify(engine, store)
    assert report.ok and report.unchained_after == 5 and report.store_position == 6


def test_a_seal_per_uk_business_date_and_never_backwards(engine) -> None:
    # 22:58 to 23:02 UTC on Monday 30 March: 23:58 Monday to 00:02 Tuesday in UK summer time.
    store = Store(range(1, 6), start=datetime(2026, 3, 30, 22, 58, tzinfo=UTC))
    store.times[4] = datetime(2026, 3, 30, 22, 59, 30, tzinfo=UTC)  # a clock a moment behind
    chained(engine, store, page_size=2)
    with engine.connect() as connection:
        seals = stored_seals(connection)
    monday, tuesday = date(2026, 3, 30), date(2026, 3, 31)
    assert [
        (s.business_date, s.first_position, s.last_position, s.events_count) for s in seals
    ] == [
        (monday, 1, 2, 2),
        (tuesday, 3, 5, 3),  # position 4 is Tuesday's: after a Tuesday event, never Monday's
    ]
    with engine.connect() as connection:
        assert stored_seals(connection, before=tuesday) == seals[:1]
        assert stored_seals(connection, since=tuesday) == seals[1:]


def test_a_crash_mid_page_chains_nothing_and_a_redelivery_is_skipped(engine, monkeypatch) -> None:
    store = Store(range(1, 11))
    chain = AuditChain(engine, store.source, store.decode, page_size=4)
    assert chain.process_page() == 4

    def crash(*_):
        raise RuntimeError("power cut")

    monkeypatch.setattr(chain_module, "_write_seals", crash)
    with pytest.raises(RuntimeError):
        chain.process_page()
    monkeypatch.undo()
    with engine.connect() as connection:
        assert connection.execute(select(audit_chain.c.position)).scalars().all() == [1, 2, 3, 4]
    everything = list(store.rows.values())
    redelivering = AuditChain(engine, lambda after, limit: everything, store.decode, page_size=4)
    assert redelivering.catch_up() == 6
    assert redelivering.catch_up() == 0
    assert verify(engine, store).ok


def test_a_wholesale_rewrite_is_caught_only_by_a_published_seal(engine) -> None:
    store = Store(range(1, 9), step=timedelta(hours=5))
    chained(engine, store)
    with engine.connect() as connection:
        published = stored_seals(connection)
    assert [s.last_position for s in published] == [3, 8]  # Monday's, Tuesday's
    store.rows[6] = dataclasses.replace(store.rows[6], state=b'{"n":6000}')
    with engine.begin() as connection:  # rebuild chain and seals over the altered rows
        connection.exec_driver_sql("DELETE FROM audit_chain")
        connection.exec_driver_sql("DELETE FROM audit_seals")
        connection.exec_driver_sql("DELETE FROM projection_tracking")
    chained(engine, store)
    assert verify(engine, store).ok, "without a seal from outside, a rewrite looks consistent"
    report = verify(engine, store, seals=published)
    assert [(f.position, f.kind) for f in report.seal_findings] == [(8, "seal")]
    assert "after position 3 and at or before 8" in report.seal_findings[0].detail


def test_seals_round_trip_and_bad_files_say_what_is_wrong() -> None:
    seal = Seal(date(2026, 3, 31), 42, "ab" * 32, 1, 42)
    assert read_seals([seal.to_json() + "\n", "\n"]) == [seal]
    for line, problem in [
        ("not json", "line 1"),
        ('{"business_date": "2026-03-31", "last_position": 4}', "missing 'link_sha256'"),
        ('{"business_date": "2026-03-31", "last_position": 4, "link_sha256": "zz"}', "64 hex"),
        ('{"chain": "other/v9", "business_date": "2026-03-31"}', "other/v9"),
    ]:
        with pytest.raises(InvalidRequest, match=problem):
            read_seals([line], origin="seals.jsonl")


def test_a_chain_wound_back_by_hand_is_reported_and_refuses_to_grow(engine) -> None:
    store = Store(range(1, 9))
    chain = chained(engine, store)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE projection_tracking SET position = 4")
    report = verify(engine, store)
    assert [(f.position, f.kind) for f in report.seal_findings] == [(8, "seal")]
    assert "beyond the chain's head 4" in report.seal_findings[0].detail
    with pytest.raises(chain_module.ChainBroken, match="tracked position is 4"):
        chain.catch_up()
