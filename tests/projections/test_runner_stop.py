"""A runner stopped while it catches up a long backlog returns after the page in hand.

Before, the runner looked at its stop flag only once a round had reached the end of the log:
a Ctrl-C or SIGTERM on `income-ledger project` during a rebuild-size catch-up waited for the
whole backlog. The stop must never cut a page short either (exactly once): the position the
runner leaves is the end of the last page it committed, and the next runner goes on from it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from application.ledger import CommandContext, RecordPayment
from income_ledger.bootstrap import (
    build_audit_chain,
    build_projection,
    event_source,
    stored_event_source,
)
from projections.chain import verify_chain
from projections.maintenance import verify
from projections.runner import ProjectionRunner
from tests.domain.helpers import CT_REF, SUN_REF

ROOT = Path(__file__).resolve().parents[2]
PAGE_SIZE = 4
PAGE_PAUSE_S = 0.02  # each watched page takes at least this: the backlog takes seconds


def record_backlog(ledger, receipts: int) -> None:
    ctx = CommandContext("integration:test")
    references = [CT_REF, SUN_REF, "JUNK"]
    for start in range(0, receipts, 250):
        ledger.record_payments(
            [
                RecordPayment("allpay", 100 + n, references[n % 3], external_id=f"stop-{n}")
                for n in range(start, min(start + 250, receipts))
            ],
            ctx,
        )


class WatchedPages:
    """Wraps a projection's `process_page`: each page paced, its committed position noted,
    and the pages begun once the runner had been told to stop counted."""

    def __init__(self, target, runner: ProjectionRunner) -> None:
        self.target = target
        self.runner = runner
        self.committed: list[int] = []
        self.begun_after_stop = 0
        self.pages_seen = threading.Event()
        self._process_page = target.process_page
        target.process_page = self.page

    def page(self, *args, **kwargs) -> int:
        if self.runner.stop_event.is_set():
            self.begun_after_stop += 1
        time.sleep(PAGE_PAUSE_S)
        count = self._process_page(*args, **kwargs)
        self.committed.append(self.target.position())  # read after its commit
        if len(self.committed) >= 5:
            self.pages_seen.set()
        return count


@pytest.mark.parametrize("stopped_in", ["read model", "audit chain"])
def test_a_stop_during_a_long_catch_up_waits_for_the_page_in_hand_only(
    ledger, settings, stopped_in
) -> None:
    record_backlog(ledger, 600)
    end = ledger.max_position()
    # Small pages where the stop comes; the other one catches up in a page or two.
    read_model_page, chain_page = (
        (PAGE_SIZE, 1000) if stopped_in == "read model" else (1000, PAGE_SIZE)
    )
    projection = build_projection(settings, ledger, page_size=read_model_page)
    chain = build_audit_chain(settings, ledger, page_size=chain_page)
    runner = ProjectionRunner(projection, companions=[chain], idle_wait_s=0.05, retry_s=0.05)
    watched = WatchedPages(projection if stopped_in == "read model" else chain, runner)
    thread = runner.start_thread()
    try:
        assert watched.pages_seen.wait(60), "the runner applied nothing within 60 s"
        stopped_at = time.monotonic()
        runner.stop()
        thread.join(timeout=60)
        stop_took_s = time.monotonic() - stopped_at
        assert not thread.is_alive()
    finally:
        runner.stop()
        thread.join(timeout=60)
    # The old runner went on to the end of the backlog: over a hundred pages more.
    assert watched.begun_after_stop <= 1, watched.begun_after_stop  # the page in hand
    assert stop_took_s < 10, stop_took_s
    # Left at the end of the last committed page, short of the end of the log.
    assert watched.target.position() == watched.committed[-1] < end, (watched.committed, end)
    assert runner.errors == 0
    projection.engine.dispose()
    chain.engine.dispose()

    # A new runner goes on from there to what a rebuild makes.
    again = build_projection(settings, ledger, page_size=50)
    again_chain = build_audit_chain(settings, ledger, page_size=50)
    try:
        ProjectionRunner(again, companions=[again_chain]).catch_up_once()
        assert again.position() == again_chain.position() == end
        report = verify(again.engine, event_source(ledger))
        assert report.ok, report.differences
        chained = verify_chain(again_chain.engine, stored_event_source(ledger), store_position=end)
        assert chained.ok and chained.unchained_after is None, chained
    finally:
        again.engine.dispose()
        again_chain.engine.dispose()


def test_income_ledger_project_stops_promptly_mid_backlog(ledger, settings) -> None:
    """A real `income-ledger project` with a backlog, a page per event: the signal ends it at
    once with exit code 0, short of the end of the log, its position the end of a committed
    page (any position is, with pages of one event). SIGTERM and SIGINT have the same
    handler; each backend takes one of them, to keep the test cheap."""
    stop_signal = signal.SIGTERM if settings.is_postgres else signal.SIGINT
    record_backlog(ledger, 1000)  # some 1,700 events: over ten seconds at one per page
    end = ledger.max_position()
    projection = build_projection(settings, ledger)
    process = subprocess.Popen(
        [sys.executable, "-m", "income_ledger.cli", "project", "--page-size", "1"],
        env=os.environ | {"LEDGER_DATABASE_URL": settings.database_url, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while projection.position() < 10:
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "the runner applied nothing within 60 s"
            time.sleep(0.02)
        signalled_at = time.monotonic()
        process.send_signal(stop_signal)
        code = process.wait(timeout=120)
        stop_took_s = time.monotonic() - signalled_at
        assert code == 0, process.stderr.read()
        assert stop_took_s < 10, stop_took_s
        assert 10 <= projection.position() < end, (projection.position(), end)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        projection.engine.dispose()
    again = build_projection(settings, ledger)
    try:
        ProjectionRunner(again).catch_up_once()
        report = verify(again.engine, event_source(ledger))
        assert report.ok, report.differences
    finally:
        again.engine.dispose()
