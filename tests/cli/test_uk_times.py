"""The CLI shows a person times and dates as the UK reads them, never bare UTC (no database).

Found in the day-close walkthrough: `periods list` and `gl list` headed a column "(UTC)",
`pending-refunds`, `payments show` and every payment summary printed the UTC instant as
stored, and `replay`/`audit trial-balance` were "as at 2026-11-30T23:59:59.999999+00:00". In
winter UTC is the UK's time, so it looked right; in summer each was an hour out. `--json`
stays ISO 8601 UTC, for scripts.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from rich.console import Console

from income_ledger.cli import audit, commands, helpers, periods
from projections.replay import ReplayResult

# 23:30 UTC on 30 June is 00:30 BST on 1 July: a UTC time shows the wrong day.
SUMMER_NIGHT = "2026-06-30T23:30:00+00:00"


@pytest.fixture
def printed(monkeypatch) -> io.StringIO:
    text = io.StringIO()
    console = Console(file=text, width=300, emoji=False)
    monkeypatch.setattr(helpers, "out", console)
    monkeypatch.setattr(commands, "out", console)
    return text


PAYMENT = {
    "payment_id": "p1",
    "channel": "cash",
    "amount_pence": 2050,
    "reference": "12345679",
    "received_at": SUMMER_NIGHT,
    "status": "allocated",
    "suspense_reason": None,
    "allocated_pence": 2050,
    "unallocated_pence": 0,
    "refunded_pence": 0,
    "reversed_pence": 0,
    "provider_details": None,
    "allocations": [],
    "pending_refunds": [],
    "history": [
        {
            "version": 1,
            "recorded_at": SUMMER_NIGHT,
            "action": "Received",
            "actor": "officer:amy",
            "reason": None,
            "details": None,
            "postings": [],
        }
    ],
}


def test_a_payment_its_history_and_waiting_refunds_show_uk_times(printed) -> None:
    commands._print_history(PAYMENT)
    commands._print_pending_refunds(
        [
            {
                "requested_at": SUMMER_NIGHT,
                "payment_id": "p1",
                "request_id": "r1",
                "amount_pence": 60000,
                "fund_code": None,
                "reference": None,
                "requested_by": "officer:amy",
                "reason": "paid twice",
            }
        ]
    )
    shown = printed.getvalue()
    assert "received 1 Jul 2026 00:30 BST" in shown
    assert shown.count("1 Jul 2026 00:30 BST") == 3 and "2026-06-30" not in shown


def test_closes_and_gl_exports_show_uk_times(printed) -> None:
    periods._print_closes(
        [
            {
                "period": "2026-06",
                "kind": "month",
                "first_day": "2026-06-01",
                "last_day": "2026-06-30",
                "closed_by": "supervisor:jo",
                "closed_at": SUMMER_NIGHT,
                "reason": "June signed off",
            }
        ]
    )
    periods._print_exports(
        [
            {
                "export_date": "2026-06-29",
                "lines_count": 20,
                "exported_by": "supervisor:jo",
                "exported_at": SUMMER_NIGHT,
                "closed_period": "",
                "sha256": "ab" * 32,
            }
        ]
    )
    shown = printed.getvalue()
    assert "(UTC)" not in shown and shown.count("1 Jul 2026 00:30 BST") == 2


def test_a_replay_is_as_at_the_end_of_a_uk_day(printed) -> None:
    end_of_30_june = datetime(2026, 6, 30, 22, 59, 59, 999999, tzinfo=UTC)
    audit._print_replay(
        ReplayResult(
            as_at=end_of_30_june,
            known_at=datetime(2026, 7, 1, 8, 0, tzinfo=UTC),
            fund_code=None,
            funds={"CT": 100},
            vat_pence_by_fund={},
            suspense_pence=0,
            accounts={},
            events_counted=1,
            events_read=1,
            last_position=1,
        )
    )
    shown = " ".join(printed.getvalue().split())  # the title wraps to the table's width
    assert "as at the end of 30 Jun 2026 (UK)" in shown
    assert "as known at 1 Jul 2026 09:00:00 BST" in shown
    assert "+00:00" not in shown


def test_a_trace_says_who_asked_for_a_refund_another_person_approved(printed) -> None:
    # Found in the day-close walkthrough: the trace of a refund paid on approval said only
    # "Refunded ... by supervisor:jo: paid twice"; that officer:amy asked for it, and that
    # this was her request approved, had to be guessed from the order of the events.
    def traced(position: int, action: str, actor: str, **details) -> SimpleNamespace:
        at = datetime(2026, 12, 1, 16, position, tzinfo=UTC)
        return SimpleNamespace(
            position=position,
            action=action,
            effective_at=at,
            recorded_at=at,
            actor=actor,
            reason="paid twice",
            correlation_id=None,
            chain="ok",
            details=details,
            postings=(),
        )

    audit._print_trace(
        SimpleNamespace(
            payment_id="p1",
            channel="cheque",
            amount_pence=120000,
            reference="12345679",
            received_at=datetime(2026, 11, 30, 14, tzinfo=UTC),
            events=(
                traced(7, "RefundRequested", "officer:amy", request_id="r1"),
                traced(8, "Refunded", "supervisor:jo", request_id="r1"),
                traced(9, "RefundRequested", "officer:amy", request_id="r2"),
                traced(10, "RefundDeclined", "supervisor:jo", request_id="r2"),
                traced(11, "Refunded", "officer:amy", request_id=None),
            ),
            whereabouts=(),
            accounted_pence=120000,
        )
    )
    shown = " ".join(printed.getvalue().split())
    assert "approves refund request r1 asked for by officer:amy (#7)" in shown
    assert "declines refund request r2 asked for by officer:amy (#9)" in shown
    assert shown.count("waiting for a second person's approval") == 2


def test_a_trace_shows_uk_times(printed) -> None:
    # Found in the day-close walkthrough: `audit trace` printed "2026-07-01 09:30:00Z" where a
    # person reads it; in summer that is 10:30 in the income office.
    summer = datetime(2026, 7, 1, 9, 30, tzinfo=UTC)
    winter = datetime(2026, 12, 1, 16, 5, 7, tzinfo=UTC)
    event = SimpleNamespace(
        position=3,
        action="Received",
        effective_at=summer,
        recorded_at=winter,
        actor="officer:amy",
        reason="",
        correlation_id=None,
        chain="ok",
        details={},
        postings=(),
    )
    audit._print_trace(
        SimpleNamespace(
            payment_id="p1",
            channel="cash",
            amount_pence=1000,
            reference="12345679",
            received_at=summer,
            events=(event,),
            whereabouts=(),
            accounted_pence=1000,
        )
    )
    shown = " ".join(printed.getvalue().split())
    assert "received 1 Jul 2026 10:30:00 BST (UK times)" in shown
    assert "effective 1 Jul 2026 10:30:00 BST recorded 1 Dec 2026 16:05:07 GMT" in shown
    assert "30:00Z" not in shown and "05:07Z" not in shown
