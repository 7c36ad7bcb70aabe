"""Group commit: the commands of concurrent requests in one process, written in one transaction.

PostgreSQL writers of the event store serialise on its table lock, so one transaction per
request caps a process at about one commit per lock hold, whatever the number of threads.
Here requests hand their encoded write to a queue and wait on a future (a thread blocks on
a `concurrent.futures.Future`; a coroutine awaits an asyncio future of its loop); one thread
takes whatever has gathered (at most MAX_GROUP writes: no artificial wait, a group grows
while the previous one commits) and writes it with `LedgerRecorder.write_group`. An event
loop's writes are handed over once per loop iteration, all that iteration's requests in one
queue entry, and a group's answers reach each loop in one call: a thread wake-up (the queue's
and the loop's self-pipe) per iteration and per group rather than per request.

A write whose events clash with stored ones is answered None, so its request runs again
alone; if the group's statement fails (a unique key of another table, say), each write of
it is tried alone, so one bad write never fails the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from application.grouped_writes import WAIT_LIMIT_S, Write
from application.outages import DATABASE_UNAVAILABLE_ERRORS, DatabaseUnavailable
from income_ledger.event_store import LedgerRecorder

log = logging.getLogger(__name__)

# Bounds: writes per transaction, and writes waiting (a full queue makes requests wait).
MAX_GROUP = 256
MAX_WAITING = 4 * MAX_GROUP
# How often an event loop's watch looks for writes waiting past WAIT_LIMIT_S: a request
# gives up between WAIT_LIMIT_S and WAIT_LIMIT_S + this after its write was submitted.
WATCH_EVERY_S = 1.0


@dataclass
class _Pending:
    write: Write
    # A thread's write is answered through `answer`; an event loop's (`loop_answer` set,
    # `answer` None) through `loop_answer`, set on its loop.
    answer: Future[int | None] | None = field(default_factory=Future)
    position: int | None = None
    error: BaseException | None = None
    loop_answer: asyncio.Future[int | None] | None = None

    def take(self) -> bool:
        """Whether the write is still wanted; from here a caller's cancel no longer
        withdraws it: it may commit."""
        if self.answer is not None:
            return self.answer.set_running_or_notify_cancel()
        assert self.loop_answer is not None
        return not self.loop_answer.done()  # cancelled, or given up by the loop's watch


class GroupCommitter:
    """Writes the `Write`s of concurrent callers in shared transactions (PostgreSQL)."""

    def __init__(self, recorder: LedgerRecorder) -> None:
        self._recorder = recorder
        # Entries: the writes of one thread's request, or of one event-loop iteration.
        self._waiting: queue.Queue[list[_Pending] | None] = queue.Queue(maxsize=MAX_WAITING)
        # Per event loop, its writes of the running iteration, until `_hand_over`.
        self._gathering: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        # Per event loop, its unanswered writes with their deadlines, in submission order
        # (so deadlines ascend): one timer per loop gives up on the late ones, where an
        # `asyncio.timeout` per request cost each a timer of its own.
        self._watched: dict[asyncio.AbstractEventLoop, deque[tuple[float, _Pending]]] = {}
        # Started by the first write: most processes (the CLI, the projector) never write so.
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def write(self, write: Write) -> int | None:
        """The write's last position once committed; None when its events clash with stored
        ones (run the command again alone). Raises what the database raised."""
        pending = self._queue(write, block=True)
        try:
            return pending.answer.result(WAIT_LIMIT_S)
        except TimeoutError:
            if pending.answer.done():
                raise
            raise TimeoutError("the group commit did not answer in time") from None

    def submit(self, write: Write) -> asyncio.Future[int | None] | None:
        """`write`'s answer as a future of the running event loop, without waiting (a loop
        must not block). None when the queue is full (call `write`, from a thread, to wait
        for room); the future raises `queue.Full` if it filled up before the hand-over, and
        `TimeoutError` if no answer came within WAIT_LIMIT_S (the write may or may not
        commit: it is left out if its group was not taken yet). The iteration's writes are
        handed over together once its callbacks have run. Cancelled before its group is
        taken, the write is left out."""
        if self._waiting.full():
            return None
        loop = asyncio.get_running_loop()
        pending = _Pending(write, answer=None, loop_answer=loop.create_future())
        gathering = self._gathering.get(loop)
        if gathering is None:
            gathering = self._gathering[loop] = []
            loop.call_soon(self._hand_over, loop)
        gathering.append(pending)
        watched = self._watched.get(loop)
        if watched is None:
            watched = self._watched[loop] = deque()
            loop.call_later(WATCH_EVERY_S, self._watch, loop)
        watched.append((loop.time() + WAIT_LIMIT_S, pending))
        assert pending.loop_answer is not None
        return pending.loop_answer

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """On `loop`: forget the answered writes at the front, fail those past their
        deadline, and look again while any is left."""
        watched = self._watched[loop]
        now = loop.time()
        while watched:
            deadline, pending = watched[0]
            answer = pending.loop_answer
            assert answer is not None
            if not answer.done():
                if deadline > now:
                    break
                answer.set_exception(TimeoutError("the group commit did not answer in time"))
            watched.popleft()
        if watched:
            loop.call_later(WATCH_EVERY_S, self._watch, loop)
        else:
            del self._watched[loop]

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        gathered = self._gathering.pop(loop)
        self._start()
        try:
            self._waiting.put_nowait(gathered)
        except queue.Full as full:  # filled up since `submit`: the callers wait in a thread
            for pending in gathered:
                pending.error = full
            _answer_on_loop(gathered)

    def _queue(self, write: Write, *, block: bool) -> _Pending:
        self._start()
        pending = _Pending(write)
        self._waiting.put([pending], block=block, timeout=WAIT_LIMIT_S if block else None)
        return pending

    def close(self) -> None:
        """End the writer once the writes queued so far are answered (bounded wait).

        On Python 3.11 a KeyboardInterrupt that cuts `join` short leaves `is_alive()` False
        while the thread runs on (bpo-45274), and `_start` would then start a second writer.
        It cannot come here: only a `serve` worker starts the writer (the API's receipts are
        the only writes through it), and its shutdown closes this while uvicorn's own signal
        handlers are in place, which raise nothing. Two writers would be safe all the same,
        as when this join times out: each group is one transaction, and a clash is answered
        None and written again alone."""
        with self._starting:
            if self._thread is None:
                return
            self._waiting.put(None)
            self._thread.join(timeout=WAIT_LIMIT_S)
            self._thread = None

    def _start(self) -> None:
        with self._starting:
            # A writer thread that died (it should not: see _commit) is replaced, so the
            # writes queued meanwhile are taken instead of each waiting out its limit.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        left: list[_Pending] = []  # taken from the queue, beyond the last group's room
        closing = False
        while True:
            if not left:
                if closing:
                    return
                first = self._waiting.get()
                if first is None:
                    return
                left = first
            group, left = left[:MAX_GROUP], left[MAX_GROUP:]
            while not left and not closing and len(group) < MAX_GROUP:
                try:
                    more = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                room = MAX_GROUP - len(group)
                group.extend(more[:room])
                left = more[room:]
            self._commit(group)

    def _commit(self, taken: list[_Pending]) -> None:
        group = [pending for pending in taken if pending.take()]
        if not group:  # every caller gave up before: an empty statement would only fail
            return
        try:
            self._answer(group)
        except Exception as error:  # a fault of ours: answer the group, keep the writer going
            log.exception("the group commit failed outside the database; its requests fail")
            on_loops = []
            for pending in group:
                if pending.answer is None:
                    pending.error = error
                    on_loops.append(pending)
                elif not pending.answer.done():
                    pending.answer.set_exception(error)
            _answer_on_loops(on_loops)

    def _answer(self, group: list[_Pending]) -> None:
        unique = _one_write_per_aggregate(group)
        try:
            self._write_once_more_on_conflict(unique)
        except DatabaseUnavailable as error:  # it fails the others alike: no use trying each
            for pending in unique:
                pending.error = error
        except Exception as error:  # each is tried alone: one bad write must not fail the rest
            if len(unique) == 1:
                unique[0].error = error
            else:
                for pending in unique:
                    self._write_alone(pending)
        on_loops = []
        for pending in group:
            if pending.answer is None:
                on_loops.append(pending)
            elif pending.error is not None:
                pending.answer.set_exception(pending.error)
            else:
                pending.answer.set_result(pending.position)
        _answer_on_loops(on_loops)

    def _write(self, group: Sequence[_Pending]) -> None:
        committing = False
        try:
            with self._recorder.transaction(commit=True) as session:
                positions = self._recorder.write_group(session, [p.write for p in group])
                committing = True
        except DATABASE_UNAVAILABLE_ERRORS as error:
            raise DatabaseUnavailable.of(error, committing) from error
        for pending, position in zip(group, positions, strict=True):
            pending.position = position

    def _write_once_more_on_conflict(self, group: Sequence[_Pending]) -> None:
        """`_write`, and once more when the database rolled it back to settle a clash with
        another transaction (a deadlock): it said nothing of the group was saved, and the
        writes are as they were decided, so this is the retry each caller would make."""
        try:
            self._write(group)
        except DatabaseUnavailable as error:
            if not error.conflict:
                raise
            log.warning("the database rolled a group commit back (%s); writing it again", error)
            self._write(group)

    def _write_alone(self, pending: _Pending) -> None:
        try:
            self._write([pending])
        except Exception as error:  # handed to the waiting request, which raises it
            pending.error = error


def _answer_on_loops(pendings: list[_Pending]) -> None:
    """From the writer thread: each loop's answers in one call on that loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
    for pending in pendings:
        assert pending.loop_answer is not None
        by_loop.setdefault(pending.loop_answer.get_loop(), []).append(pending)
    for loop, answers in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for these
            loop.call_soon_threadsafe(_answer_on_loop, answers)


def _answer_on_loop(pendings: list[_Pending]) -> None:
    for pending in pendings:
        answer = pending.loop_answer
        assert answer is not None
        if answer.done():  # cancelled after its group was taken
            continue
        if pending.error is not None:
            answer.set_exception(pending.error)
        else:
            answer.set_result(pending.position)


def _one_write_per_aggregate(group: list[_Pending]) -> list[_Pending]:
    """The writes that touch no aggregate an earlier write of the group touches; the others
    are answered None at once (they clash: the earlier one will have its versions)."""
    seen: set[object] = set()
    unique = []
    for pending in group:
        ids = {event.originator_id for event in pending.write.events}
        if ids & seen:
            continue
        seen |= ids
        unique.append(pending)
    return unique
