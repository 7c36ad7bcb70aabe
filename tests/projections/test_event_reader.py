"""The bare-driver event reader gives exactly what eventsourcing's own reader gives (issue #9).

Replay, `audit verify` and the projections read through projections.event_reader; these
tests hold its rows and its decoded events equal to `select_notifications` and
`mapper.to_domain_event`, on both backends, for a demo run, a random workload and the fund
chart's own events.
"""

from __future__ import annotations

from typing import Any

from application.ledger import CommandContext, IncomeLedger
from income_ledger import demo
from income_ledger.bootstrap import event_reader, read_events
from tests.conftest import leave_a_gap, stored_events
from tests.projections.conftest import random_workload


def _library_rows(ledger: IncomeLedger, after: int | None, limit: int) -> list[Any]:
    return ledger.recorder.select_notifications(start=after, limit=limit, inclusive_of_start=False)


def _same_event(ours: Any, theirs: Any) -> bool:
    return type(ours) is type(theirs) and ours.__dict__ == theirs.__dict__


def _record_history(ledger: IncomeLedger) -> None:
    ctx = CommandContext("officer:reader")
    plan = demo.plan_demo(ledger, days=3, receipts_per_day=15, seed=9)
    demo.record_demo(ledger, plan)
    leave_a_gap(ledger)  # PostgreSQL's positions skip numbers: both readers skip them alike
    random_workload(ledger, seed=9, receipts=15)
    ledger.disable_fund("PCN", ctx, "no more parking")
    ledger.enable_fund("PCN", ctx, "parking again")


def test_rows_and_events_equal_the_librarys_for_every_kind_recorded(ledger) -> None:
    _record_history(ledger)
    reader = event_reader(ledger)
    theirs = _library_rows(ledger, None, 10_000)
    ours = reader.rows(None, 10_000)
    assert len(ours) == len(theirs) == stored_events(ledger)
    kinds = set()
    for mine, library in zip(ours, theirs, strict=True):
        assert mine.id == library.id
        assert mine.originator_id == library.originator_id
        assert mine.originator_version == library.originator_version
        assert mine.topic == library.topic
        assert mine.state == library.state
        event, expected = reader.to_domain_event(mine), ledger.mapper.to_domain_event(library)
        assert _same_event(event, expected), library.topic
        kinds.add(type(event).__qualname__)
    as_text = reader.text_rows(None, 10_000)
    assert [row.originator_id for row in as_text] == [str(row.originator_id) for row in theirs]
    assert [row._replace(originator_id=None) for row in as_text] == [
        row._replace(originator_id=None) for row in ours
    ]
    assert {"FundChart.FundDisabled", "FundChart.FundEnabled", "Payment.Received"} <= kinds
    assert {"Payment.Allocated", "Payment.Refunded", "Payment.Transferred"} <= kinds


def test_pages_follow_the_position_wherever_they_start(ledger) -> None:
    random_workload(ledger, seed=3, receipts=6)
    reader = event_reader(ledger)
    last = ledger.max_position()
    for after in (0, 1, last // 2, last - 1, last):
        page = reader.events(after, 7)
        expected = [
            (n.id, ledger.mapper.to_domain_event(n)) for n in _library_rows(ledger, after, 7)
        ]
        assert [p for p, _ in page] == [p for p, _ in expected]
        assert all(_same_event(a, b) for (_, a), (_, b) in zip(page, expected, strict=True))
    assert reader.events(last, 10) == []


def test_read_events_walks_every_page(ledger) -> None:
    random_workload(ledger, seed=4, receipts=6)
    positions = [position for position, _ in read_events(ledger, page_size=4)]
    assert positions == [position for position, _ in ledger.read_events(page_size=1000)]
    assert positions[-1] == ledger.max_position()
