"""The API's linking worker (application.auto_link): which receipts call for a run, runs
merged and spaced, and what another process imports seen at the next check; on SQLite and
PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from application import reconciliation
from application.auto_link import LinkingWorker, WaitingLines
from application.imports import import_file
from application.ledger import CommandContext, RecordPayment
from application.reconciliation import link_counted_twice, unlink_line
from income_ledger.bootstrap import build_ledger
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_statement_imports import TODAY, YESTERDAY, camt, entry
from tests.domain.helpers import CT_REF

OFFICER = CommandContext("officer:auto-link")
WINDOW_DAYS = reconciliation.MATCH_WINDOW_DAYS


def wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_only_a_receipt_a_waiting_line_may_pay_in_calls_for_a_run(ledger) -> None:
    lines = WaitingLines(ledger)
    assert lines.may_pay_in({TODAY: 100, YESTERDAY: None}) is None  # no statement at all
    import_file(ledger, camt(entry("7.00", ref="B1", day=YESTERDAY)), OFFICER, file_name="s.xml")
    assert lines.may_pay_in({YESTERDAY: 700}) == YESTERDAY  # one receipt of its amount
    assert lines.may_pay_in({YESTERDAY: 300}) == YESTERDAY  # part of a channel's day
    assert lines.may_pay_in({YESTERDAY: 701}) is None  # more than the line
    assert lines.may_pay_in({TODAY: 700}) is None  # received after the line's booking
    back = YESTERDAY - timedelta(days=WINDOW_DAYS)
    assert lines.may_pay_in({back: 700}) == back  # the window's first day
    assert lines.may_pay_in({back - timedelta(days=1): 700}) is None
    assert lines.may_pay_in({back - timedelta(days=1): None}) is not None  # card money
    assert lines.may_pay_in({TODAY: 900, YESTERDAY: 700}) == YESTERDAY


def test_a_line_linked_unlinked_or_imported_by_another_process_is_seen(ledger, settings) -> None:
    lines = WaitingLines(ledger)
    assert lines.may_pay_in({TODAY: 700}) is None
    other_process = build_ledger(settings)
    try:
        statement = camt(entry("7.00", ref="B1", text="ALLPAY LTD"))
        batch_id = import_file(other_process, statement, OFFICER, file_name="s.xml").batch_id
        assert lines.may_pay_in({TODAY: 700}) == TODAY
        allpay = allpay_file(allpay_line(CT_REF, "3.00"), allpay_line(CT_REF, "4.00"))
        import_file(other_process, allpay, OFFICER, file_name="be.txt")
        (late,) = link_counted_twice(other_process, OFFICER)
        assert lines.may_pay_in({TODAY: 700}) is None
        unlink_line(other_process, batch_id, late.line, OFFICER, "wrong pairing")
        assert lines.may_pay_in({TODAY: 700}) == TODAY
    finally:
        other_process.close()


def linking_threads(besides: frozenset[threading.Thread] = frozenset()) -> list[threading.Thread]:
    """The auto-link threads alive, but for `besides`: those an earlier test's services in
    this process left sleeping out their delay (an xdist worker runs many tests)."""
    return [t for t in threading.enumerate() if t.name == "auto-link" and t not in besides]


def test_asks_during_a_run_merge_into_one_run_after_it_spaced_by_the_delay(monkeypatch) -> None:
    """No storage: the check says every day may be paid in, the runs are recorded."""
    started, release = threading.Event(), threading.Event()
    runs: list[tuple[object, float]] = []

    def run(ledger, since):
        runs.append((since, time.monotonic()))
        if len(runs) == 1:
            started.set()
            release.wait(10)
        return []

    monkeypatch.setattr(reconciliation, "link_after_recording", run)
    monkeypatch.setattr(WaitingLines, "may_pay_in", lambda self, asks: min(asks, default=None))
    earlier = frozenset(linking_threads())
    worker = LinkingWorker(ledger=None, delay_s=lambda: 0.5)  # type: ignore[arg-type]
    try:
        begun = time.monotonic()
        worker.after_receipt(TODAY, 100, "cheque")
        assert started.wait(10)
        for back in (1, 3, 0):  # while the first runs: each returns at once
            worker.after_receipt(TODAY - timedelta(days=back), 100, "cash")
        release.set()
        wait_until(lambda: len(runs) == 2)
        assert [day for day, _ in runs] == [TODAY, TODAY - timedelta(days=3)]
        assert runs[1][1] - runs[0][1] >= 0.5 and runs[0][1] - begun < 0.5
        worker.after_receipt(TODAY, 100, "cash")
        wait_until(lambda: len(runs) == 3)
        assert runs[2][0] == TODAY and runs[2][1] - runs[1][1] >= 0.5
    finally:
        worker.close()
    assert not linking_threads(earlier)


def test_a_failed_check_or_run_is_logged_and_the_worker_goes_on(monkeypatch, caplog) -> None:
    days = []

    def check(self, asks):
        if not days:
            days.append(None)
            raise OSError("database gone")
        return min(asks)

    monkeypatch.setattr(WaitingLines, "may_pay_in", check)
    monkeypatch.setattr(reconciliation, "link_after_recording", lambda _, day: days.append(day))
    worker = LinkingWorker(ledger=None, delay_s=lambda: 0)  # type: ignore[arg-type]
    try:
        worker.after_receipt(TODAY, 100, "cash")
        wait_until(lambda: len(days) == 1)
        worker.after_receipt(YESTERDAY, 100, "cash")
        wait_until(lambda: len(days) == 2)
    finally:
        worker.close()
    assert days == [None, YESTERDAY]
    assert "reconcile link" in caplog.text


def test_a_check_reads_only_what_was_recorded_since_the_last_one(ledger, monkeypatch) -> None:
    """Not from the last import event: that would read every receipt since, at each check."""
    import_file(ledger, camt(entry("7.00", ref="B1")), OFFICER, file_name="s.xml")
    lines = WaitingLines(ledger)
    assert lines.may_pay_in({TODAY: 800}) is None
    for amount_pence in (100, 200):
        ledger.record_payment(RecordPayment("cash", amount_pence, "UNKNOWN"), OFFICER)
    checked_at = ledger.max_position()
    read_after = []
    real_notifications = ledger.notifications

    def notifications(*classes, after=0, **more):
        read_after.append(after)
        return real_notifications(*classes, after=after, **more)

    monkeypatch.setattr(ledger, "notifications", notifications)
    assert lines.may_pay_in({TODAY: 800}) is None
    ledger.record_payment(RecordPayment("cash", 300, "UNKNOWN"), OFFICER)
    assert lines.may_pay_in({TODAY: 700}) == TODAY
    assert read_after[1] >= checked_at


def test_a_run_that_outlasts_close_ends_its_thread_after_it(monkeypatch) -> None:
    """close() waits CLOSE_WAIT_S for a run in progress; a run longer than that ends its
    thread when it is over, never going on as a second worker beside the one the next ask
    starts (both would read and change the same WaitingLines)."""
    from application import auto_link

    monkeypatch.setattr(auto_link, "CLOSE_WAIT_S", 0.1)
    started, release = threading.Event(), threading.Event()
    runs: list[object] = []

    def run(ledger, since):
        runs.append(since)
        if len(runs) == 1:
            started.set()
            release.wait(10)
        return []

    monkeypatch.setattr(reconciliation, "link_after_recording", run)
    monkeypatch.setattr(WaitingLines, "may_pay_in", lambda self, asks: min(asks, default=None))
    earlier = frozenset(linking_threads())
    worker = LinkingWorker(ledger=None, delay_s=lambda: 0)  # type: ignore[arg-type]
    try:
        worker.after_receipt(TODAY, 100, "cash")
        assert started.wait(10)
        worker.close()  # gives up waiting: the run goes on
        worker.after_receipt(YESTERDAY, 100, "cash")  # a new thread
        wait_until(lambda: len(runs) == 2)
        release.set()
        wait_until(lambda: len(linking_threads(earlier)) == 1)
        worker.after_receipt(TODAY, 100, "cash")
        wait_until(lambda: len(runs) == 3)
    finally:
        release.set()
        worker.close()
    assert not linking_threads(earlier)


def test_receipts_between_runs_do_not_wake_the_worker(monkeypatch) -> None:
    """A wake per receipt was about 5% of a busy API worker's CPU: asks made during a run or
    the delay after it wake nothing (the worker takes them when it next looks), only the
    first ask after a quiet spell does; and they are all linked, in the next run."""
    runs: list[object] = []
    monkeypatch.setattr(reconciliation, "link_after_recording", lambda _, day: runs.append(day))
    monkeypatch.setattr(WaitingLines, "may_pay_in", lambda self, asks: min(asks, default=None))
    worker = LinkingWorker(ledger=None, delay_s=lambda: 0.5)  # type: ignore[arg-type]
    wakes = []
    notify = worker._changed.notify  # notify_all calls it too
    monkeypatch.setattr(worker._changed, "notify", lambda *n: (wakes.append(1), notify(*n))[1])
    try:
        worker.after_receipt(TODAY, 100, "cash")  # starts the thread: no wake needed
        wait_until(lambda: len(runs) == 1)
        for back in range(200):  # during the delay after the run
            worker.after_receipt(TODAY - timedelta(days=back % 4), 100, "cash")
        assert wakes == []
        wait_until(lambda: len(runs) == 2)
        assert runs[1] == TODAY - timedelta(days=3)
        wait_until(lambda: worker._idle is not None)  # past the delay: it waits for asks
        worker.after_receipt(TODAY, 100, "cash")
        wait_until(lambda: len(runs) == 3)
        assert wakes == [1]
    finally:
        worker.close()


def test_a_delay_or_run_that_raises_is_logged_and_the_thread_goes_on(monkeypatch, caplog) -> None:
    """Whatever one turn of the loop raises (the delay's setting, a run), the thread logs
    it and takes the next ask: a dead thread would leave every later line unlinked."""
    runs: list[object] = []
    delays: list[int] = []

    def run(ledger, since):
        runs.append(since)
        if len(runs) == 1:
            raise RuntimeError("run broke")
        return []

    def delay_s() -> float:
        delays.append(1)
        if len(delays) == 1:
            raise ValueError("no such setting")
        return 0.0

    monkeypatch.setattr(reconciliation, "link_after_recording", run)
    monkeypatch.setattr(WaitingLines, "may_pay_in", lambda self, asks: min(asks, default=None))
    worker = LinkingWorker(ledger=None, delay_s=delay_s)  # type: ignore[arg-type]
    monkeypatch.setattr("application.auto_link.DEFAULT_DELAY_S", 0.05)
    try:
        worker.after_receipt(TODAY, 100, "cash")
        wait_until(lambda: len(runs) == 1 and len(delays) == 1)
        worker.after_receipt(YESTERDAY, 100, "cash")
        wait_until(lambda: len(runs) == 2)
        assert [t for t in threading.enumerate() if t.name == "auto-link"]
    finally:
        worker.close()
    assert runs == [TODAY, YESTERDAY]
    assert "run broke" in caplog.text and "no such setting" in caplog.text
