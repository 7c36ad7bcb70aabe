"""`audit verify` and `replay` split over worker processes (issue #9) give exactly the
single reader's answer, on SQLite and PostgreSQL: a clean chain, a row altered in the
middle of the second range, and replays with and without their filters."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from income_ledger.bootstrap import replay, store_address, stored_event_source
from projections import chain as chain_module
from projections import segments
from projections.chain import verify_chain
from tests.audit.conftest import execute, spread_workload
from tests.conftest import leave_a_gap, stored_events

PROCESSES = 3


@pytest.fixture
def split_small(monkeypatch) -> None:
    """Ranges of a few events each, so that a test-sized ledger is split at all."""
    monkeypatch.setattr(segments, "MIN_EVENTS_PER_PROCESS", 1)


@pytest.fixture
def chained(ledger, chain):
    spread_workload(ledger, seed=21, receipts=6)
    leave_a_gap(ledger)  # PostgreSQL's positions skip numbers: ranges split positions, not events
    spread_workload(ledger, seed=23, receipts=6)
    chain.catch_up()
    return chain


def verify(ledger, chain, processes: int | None):
    return verify_chain(
        chain.engine,
        stored_event_source(ledger),
        store_position=ledger.max_position(),
        page_size=7,
        processes=processes,
        store=store_address(ledger),
    )


def test_a_clean_chain_split_in_three_is_the_single_readers_report(
    ledger, chained, split_small
) -> None:
    head = chained.position()
    sealed = frozenset(range(1, head + 1))
    ranges = segments.split(head, PROCESSES)
    joined = chain_module._walk_in_processes(
        chained.engine, store_address(ledger), ranges, head, sealed, 7
    )
    assert joined is not None, "the ranges did not join up: the split path fell back"
    alone = verify(ledger, chained, processes=1)
    assert alone.ok and alone.events_checked == stored_events(ledger)
    assert joined.recomputed.hex() == alone.head_link
    assert joined.events_checked == alone.events_checked
    assert asdict(verify(ledger, chained, PROCESSES)) == asdict(alone)


def test_a_row_altered_inside_the_second_range_is_reported_where_one_reader_finds_it(
    ledger, chained, split_small
) -> None:
    after, stop = segments.split(chained.position(), PROCESSES)[1]
    with chained.engine.connect() as connection:
        target, state = connection.execute(
            text("SELECT id, state FROM ledger_events WHERE id >= :middle ORDER BY id LIMIT 1"),
            {"middle": (after + stop) // 2},
        ).one()
    assert after < target <= stop
    forged = bytes(state).replace(b'"', b"'", 1)
    execute(
        chained.engine, "UPDATE ledger_events SET state = :s WHERE id = :id", s=forged, id=target
    )
    split = verify(ledger, chained, PROCESSES)
    alone = verify(ledger, chained, processes=1)
    assert (split.first_mismatch.position, split.first_mismatch.kind) == (target, "altered")
    assert asdict(split) == asdict(alone)


def test_a_small_ledger_is_read_by_one_process(ledger, chained) -> None:
    assert segments.process_count(ledger.max_position(), None) == 1
    assert segments.process_count(ledger.max_position(), PROCESSES) == 1
    report = verify(ledger, chained, processes=None)
    assert report.ok and report.events_checked == stored_events(ledger)


@pytest.mark.parametrize(
    ("known_at", "fund"),
    [(None, None), (datetime(2026, 4, 1, tzinfo=UTC), None), (None, "CT")],
)
def test_a_replay_split_in_three_is_the_single_replay(
    ledger, settings, split_small, known_at, fund
) -> None:
    spread_workload(ledger, seed=22, receipts=12)
    as_at = datetime(2026, 4, 15, tzinfo=UTC)
    times = {"as_at": as_at, "known_at": known_at, "fund_code": fund, "page_size": 4}
    alone = replay(settings, ledger, processes=1, **times)
    split = replay(settings, ledger, processes=PROCESSES, **times)
    assert alone.events_read == stored_events(ledger)
    assert split == alone
    assert list(split.accounts) == list(alone.accounts)
    assert list(split.funds) == list(alone.funds)


def test_the_commands_print_the_same_split_or_not(ledger, chained, split_small, cli) -> None:
    def out(*args: str, code: int = 0) -> str:
        return cli(*args, code=code).output

    one, three = ("--processes", "1"), ("--processes", str(PROCESSES))
    replay_args = ("replay", "--as-at", "2026-04-15", "--format", "json")
    assert out(*replay_args, *three) == out(*replay_args, *one)
    verify_args = ("audit", "verify", "--json", "--page-size", "7")
    assert out(*verify_args, *three) == out(*verify_args, *one)
    target = segments.split(chained.position(), PROCESSES)[2][0] + 2
    execute(chained.engine, "DELETE FROM ledger_events WHERE id = :id", id=target)
    split = out(*verify_args, *three, code=1)
    assert split == out(*verify_args, *one, code=1)
    assert json.loads(split)["first_mismatch"]["position"] == target
