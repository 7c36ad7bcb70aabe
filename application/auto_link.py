"""The API's linking runs after new money is recorded, off the requests that recorded it.

A GOV.UK Pay message that moved card money, or a receipt recorded through `POST /payments`
(a card taken at a till, a cheque, cash), may be what a statement line imported before it
pays in (reconciliation.link_counted_twice). The request only says so to the process's
LinkingWorker, which costs it a lock and a notify: one thread of the worker's own makes
the runs, so no request and no keep-alive connection waits for one.

Receipts come at the rate of the write path (POST /payments, group commit), so the worker
makes at most one run per `delay_s` (the asks of that time are merged into the next run,
from the earliest day asked), and first checks whether any statement line could be paid in
by what was asked (WaitingLines): on most days none is, and the check reads only the
import events recorded since the previous check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import date, timedelta
from uuid import UUID

from application import reconciliation
from application.ledger import IncomeLedger
from application.reconciliation import MATCH_WINDOW_DAYS, OpenLines, card_money_day, scope_start
from domain.limits import uk_today
from domain.payment import CLEARING_CHANNELS

log = logging.getLogger(__name__)

# LEDGER_AUTO_LINK_DELAY_SECONDS: at most one run per this long in a process.
DEFAULT_DELAY_S = 2.0
# Card payments waiting for the worker to read their day; past this, the asking request
# reads it (a burst the worker cannot keep up with slows its senders, never loses one).
MAX_CARD_PAYMENTS_WAITING = 1024
# How long close() waits for a run in progress to end.
CLOSE_WAIT_S = 30.0
CLEARING_CHANNEL_NAMES = frozenset(c.value for c in CLEARING_CHANNELS)
# Asked: a day of new money and the least amount of a line that could pay it in (None: any
# line booked from that day on, a debit included: card money a payout pays in later).
Asks = dict[date, int | None]


class WaitingLines:
    """The statement lines that may wait for a link (reconciliation.OpenLines), kept by
    one process and brought up to date by reading the import events recorded after the
    last one it read: another process's import, link or unlink is seen at the next check,
    for one query over the events since.

    It knows the lines booked from `covers` on; it is read again from the start each UK day
    (and for an earlier day asked), so it holds a few weeks of statement lines at most."""

    def __init__(self, ledger: IncomeLedger) -> None:
        self.ledger = ledger
        self.covers: date | None = None
        self._read_on: date | None = None
        self._position = 0
        self._lines: OpenLines | None = None

    def may_pay_in(self, asks: Asks) -> date | None:
        """The earliest day asked whose money a waiting line may pay in (None: no line can):
        with a least amount (a receipt's), a credit line of at least that amount booked in
        the day's window (that receipt alone, or a channel's day it is part of); without,
        any line booked from that day on."""
        if not asks:
            return None
        self.refresh(min(asks))
        found = None
        for day, least_pence in asks.items():
            if (found is None or day < found) and self._any_for(day, least_pence):
                found = day
        return found

    def refresh(self, since: date) -> None:
        today = uk_today()
        if self.covers is None or since < self.covers or self._read_on != today:
            # A receipt of a day or two back (a cheque banked late) is common: cover the
            # match window at once rather than reading the weeks again for each such day.
            self.covers = min(since, today - timedelta(days=MATCH_WINDOW_DAYS))
            self._read_on = today
            self._position = scope_start(self.ledger, self.covers)
            self._lines = OpenLines(self.covers)
        # Positions become visible in order (the event store's lock): whatever is up to
        # `last` now is read below, so the next check starts after it, not after the last
        # import event (which may be far back: a scan of every receipt since).
        last = self.ledger.max_position()
        assert self._lines is not None
        for notification in self.ledger.notifications(*OpenLines.TOPICS, after=self._position):
            self._lines.apply(self.ledger.mapper.to_domain_event(notification))
            self._position = notification.id
        self._position = max(self._position, last)

    def _any_for(self, day: date, least_pence: int | None) -> bool:
        last = day + timedelta(days=MATCH_WINDOW_DAYS)
        assert self._lines is not None
        for line in self._lines.waiting.values():
            if line.booked < day:
                continue
            if least_pence is None:
                return True
            if not line.is_debit and line.booked <= last and line.amount_pence >= least_pence:
                return True
        return False


class LinkingWorker:
    """The linking runs of one API process, in a daemon thread of its own, started by the
    first ask and stopped by `close` (the app's shutdown). Asks return at once; the runs
    are made one at a time, at most one per `delay_s()` seconds, each for everything asked
    since the previous one, from the earliest day a waiting line may pay in. A failed run
    or check is logged (`reconcile link` links the lines later): the money was recorded
    before the ask, and stays so."""

    def __init__(
        self, ledger: IncomeLedger, delay_s: Callable[[], float] = lambda: DEFAULT_DELAY_S
    ) -> None:
        self.ledger = ledger
        self.delay_s = delay_s
        self.lines = WaitingLines(ledger)
        self._changed = threading.Condition()
        self._asks: Asks = {}
        self._card_payments: set[str] = set()
        self._thread: threading.Thread | None = None
        self._closing = False
        # The thread waiting for asks, to be woken; else it looks for them without a wake.
        self._idle: threading.Thread | None = None

    def after_receipt(self, received: date, amount_pence: int, channel: str) -> None:
        """A receipt of this UK day, amount and channel was recorded (not from a statement).
        A card provider's (in clearing) is paid in by a payout net of fees, of any amount."""
        self._ask(received, None if channel in CLEARING_CHANNEL_NAMES else amount_pence)

    def after_card_money(self, payment_id: str) -> None:
        """Card money a provider holds for this payment moved (taken, refunded, charged a
        fee, its dispute lost): link from the earliest day the provider holds of it."""
        with self._changed:
            if len(self._card_payments) < MAX_CARD_PAYMENTS_WAITING:
                self._card_payments.add(payment_id)
                self._wake()
                return
        since = self._card_day(payment_id)
        if since is not None:
            self._ask(since, None)

    def after_import(self, since: date | None) -> None:
        """An imported file recorded receipts of these days on (None: none to link)."""
        if since is not None:
            self._ask(since, None)

    def close(self) -> None:
        """Stop the thread once its run in progress (if any) ends; what was asked and not
        yet run is left to the next run or to `reconcile link`. Asked again after, it
        starts again."""
        with self._changed:
            thread, self._closing = self._thread, True
            self._changed.notify_all()
        if thread is not None:
            thread.join(CLOSE_WAIT_S)
        with self._changed:
            if self._asks or self._card_payments:
                log.info("linking runs stopped with new money not yet linked: run `reconcile link`")
            self._asks, self._card_payments = {}, set()
            self._thread, self._closing = None, False

    def _ask(self, day: date, least_pence: int | None) -> None:
        with self._changed:
            if day in self._asks:
                known = self._asks[day]
                least_pence = (
                    None if known is None or least_pence is None else min(known, least_pence)
                )
            self._asks[day] = least_pence
            self._wake()

    def _wake(self) -> None:
        """Start the thread, or wake it if it waits for asks. Between runs (the delay) and
        during one it is not woken: it takes what was asked when it next looks, and a wake
        per receipt was about 5% of a busy API worker's CPU (issue #9)."""
        if self._closing:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="auto-link", daemon=True)
            self._thread.start()
        elif self._idle is self._thread:
            self._idle = None
            self._changed.notify_all()  # a thread left behind by `close` may wait too

    def _run(self) -> None:
        me = threading.current_thread()

        def stopped() -> bool:  # closed, or left behind by a close that gave up waiting
            return self._closing or self._thread is not me

        while True:
            with self._changed:
                if not stopped():  # a thread left behind must not take the current one's place
                    self._idle = me
                self._changed.wait_for(lambda: stopped() or bool(self._asks or self._card_payments))
                if self._idle is me:
                    self._idle = None
                if stopped():
                    return
                asks, self._asks = self._asks, {}
                cards, self._card_payments = self._card_payments, set()
            started = time.monotonic()
            try:
                self._link(asks, cards)
            except Exception:  # the money is recorded: the thread must outlive any run
                log.exception(
                    "linking statement lines failed; nothing was linked: run "
                    "`income-ledger reconcile link`"
                )
            with self._changed:  # what is asked meanwhile waits for the next run
                self._changed.wait_for(stopped, started + self._delay_s() - time.monotonic())

    def _delay_s(self) -> float:
        """The spacing of runs; a setting that cannot be read spaces them by the default,
        rather than ending the thread (and every later run of the process with it)."""
        try:
            return float(self.delay_s())
        except Exception:
            log.exception("reading the linking runs' delay failed; using %s s", DEFAULT_DELAY_S)
            return DEFAULT_DELAY_S

    def _link(self, asks: Asks, cards: set[str]) -> None:
        for payment_id in cards:
            day = self._card_day(payment_id)
            if day is not None:
                asks[day] = None
        try:
            since = self.lines.may_pay_in(asks)
        except Exception:  # the money is recorded: keep it so, and say how to link
            log.exception(
                "reading which statement lines wait for a link failed; nothing was linked: "
                "run `income-ledger reconcile link`"
            )
            return
        if since is not None:
            reconciliation.link_after_recording(self.ledger, since)

    def _card_day(self, payment_id: str) -> date | None:
        try:
            return card_money_day(self.ledger, UUID(payment_id))
        except Exception:  # as in link_after_recording: the message was applied; keep it so
            log.exception("reading card payment %s to link statement lines failed", payment_id)
            return None
