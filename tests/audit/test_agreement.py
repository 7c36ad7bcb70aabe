"""Replay (from the events) against the read model (from the projection): a random workload
with dates spread over two months must give the same balances, to the penny, at every date."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from application.ledger import RecordPayment
from income_ledger.bootstrap import build_projection
from projections.replay import replay_balances
from projections.schema import LIVE
from tests.audit.conftest import SPREAD, START, spread_workload
from tests.domain.helpers import CT_REF

POSTINGS = LIVE.postings
CUTS = [START - timedelta(days=1)] + [START + SPREAD * k / 5 for k in range(1, 8)]


@pytest.fixture
def projection(ledger, settings):
    projection = build_projection(settings, ledger, page_size=100)
    yield projection
    projection.engine.dispose()


def read_model_balances(projection, as_at: datetime, known_at: datetime | None = None):
    """The same figures from the `postings` table, as a reporting tool would read them."""
    where = [POSTINGS.c.effective_at <= as_at]
    if known_at is not None:
        where.append(POSTINGS.c.recorded_at <= known_at)
    with projection.engine.connect() as connection:
        funds = dict(
            connection.execute(
                select(POSTINGS.c.fund_code, -func.sum(POSTINGS.c.amount_pence))
                .where(POSTINGS.c.fund_code.is_not(None), *where)
                .group_by(POSTINGS.c.fund_code)
            ).all()
        )
        accounts = dict(
            connection.execute(
                select(POSTINGS.c.account, func.sum(POSTINGS.c.amount_pence))
                .where(*where)
                .group_by(POSTINGS.c.account)
            ).all()
        )
    return {k: int(v) for k, v in funds.items()}, {k: int(v) for k, v in accounts.items()}


def test_replay_and_read_model_agree_at_every_date(ledger, projection) -> None:
    ids = spread_workload(ledger, seed=11)
    projection.catch_up()
    events = list(ledger.read_events(page_size=100))
    seen = set()
    for cut in CUTS:
        replayed = replay_balances(events, as_at=cut)
        funds, accounts = read_model_balances(projection, cut)
        assert replayed.funds == funds, cut
        assert replayed.accounts == accounts, cut
        assert replayed.suspense_pence == -accounts.get("suspense", 0)
        assert replayed.trial_balance_pence == 0
        seen.add(tuple(sorted(replayed.funds.items())))
    assert len(seen) >= 5, "the workload's dates should make the balances differ by date"
    # And today's balances are what the payments themselves hold.
    views = [ledger.get_payment(pid) for pid in ids]
    held: dict[str, int] = defaultdict(int)
    for view in views:
        for line in view["allocations"]:
            held[line["fund_code"]] += line["amount_pence"]
    now = replay_balances(events, as_at=datetime.now(UTC))
    assert {k: v for k, v in now.funds.items() if v} == {k: v for k, v in held.items() if v}
    assert now.suspense_pence == sum(view["unallocated_pence"] for view in views)


def test_as_known_at_agrees_with_the_read_model_by_recording_time(
    ledger, projection, officer
) -> None:
    """A receipt taken yesterday but keyed after the auditor's known-at time."""
    ledger.record_payment(RecordPayment("cash", 5_000, CT_REF, external_id="first"), officer)
    time.sleep(0.01)
    known_at = datetime.now(UTC)
    time.sleep(0.01)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    ledger.record_payment(
        RecordPayment("cheque", 7_000, "JUNK", received_at=yesterday, external_id="late"), officer
    )
    projection.catch_up()
    events = list(ledger.read_events())
    as_at = datetime.now(UTC)
    then = replay_balances(events, as_at=as_at, known_at=known_at)
    now = replay_balances(events, as_at=as_at)
    assert (then.funds, then.suspense_pence) == ({"CT": 5_000}, 0)
    assert (now.funds, now.suspense_pence) == ({"CT": 5_000}, 7_000)
    assert read_model_balances(projection, as_at, known_at) == (then.funds, then.accounts)
    a_day_ago = replay_balances(events, as_at=yesterday + timedelta(seconds=1))
    assert (a_day_ago.funds, a_day_ago.suspense_pence) == ({}, 7_000)
