"""Group commit: the commands of concurrent requests in one process, written in one transaction.

PostgreSQL writers of the event store serialise on its table lock, so one transaction per
request caps a process at about one commit per lock hold, whatever the number of threads.
Here requests hand their encoded write to a queue and wait on a future (a thread blocks on
it; a coroutine awaits it, `asyncio.wrap_future`); one thread takes whatever has gathered (at most MAX_GROUP writes: no artificial wait, a group grows while the previous one
commits) and writes it with `LedgerRecorder.write_group`. A write whose events clash with
stored ones is answered None, so its request runs again alone; if the group's statement fails
(a unique key of another table, say), each write of it is tried alone, so one bad write
never fails the others.
"""

from __future__ import annotations

import logging
import queue
import threading
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


@dataclass
class _Pending:
    write: Write
    answer: Future[int | None] = field(default_factory=Future)
    position: int | None = None
    error: BaseException | None = None


class GroupCommitter:
    """Writes the `Write`s of concurrent callers in shared transactions (PostgreSQL)."""

    def __init__(self, recorder: LedgerRecorder) -> None:
        self._recorder = recorder
        self._waiting: queue.Queue[_Pending | None] = queue.Queue(maxsize=MAX_WAITING)
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

    def submit(self, write: Write) -> Future[int | None] | None:
        """`write`'s answer as a future, without waiting: for an event loop, which must not
        block. None when the queue is full (call `write`, from a thread, to wait for room).
        Cancelled before its group is taken, the write is left out."""
        try:
            return self._queue(write, block=False).answer
        except queue.Full:
            return None

    def _queue(self, write: Write, *, block: bool) -> _Pending:
        self._start()
        pending = _Pending(write)
        self._waiting.put(pending, block=block, timeout=WAIT_LIMIT_S if block else None)
        return pending

    def close(self) -> None:
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
        while True:
            first = self._waiting.get()
            if first is None:
                return
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    more = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._commit(group)
                    return
                group.append(more)
            self._commit(group)

    def _commit(self, taken: list[_Pending]) -> None:
        # From here a caller's cancel no longer withdraws its write: it may commit.
        group = [pending for pending in taken if pending.answer.set_running_or_notify_cancel()]
        if not group:  # every caller gave up before: an empty statement would only fail
            return
        try:
            self._answer(group)
        except Exception as error:  # a fault of ours: answer the group, keep the writer going
            log.exception("the group commit failed outside the database; its requests fail")
            for pending in group:
                if not pending.answer.done():
                    pending.answer.set_exception(error)

    def _answer(self, group: list[_Pending]) -> None:
        unique = _one_write_per_aggregate(group)
        try:
            self._write(unique)
        except DatabaseUnavailable as error:  # it fails the others alike: no use trying each
            for pending in unique:
                pending.error = error
        except Exception as error:  # each is tried alone: one bad write must not fail the rest
            if len(unique) == 1:
                unique[0].error = error
            else:
                for pending in unique:
                    self._write_alone(pending)
        for pending in group:
            if pending.error is not None:
                pending.answer.set_exception(pending.error)
            else:
                pending.answer.set_result(pending.position)

    def _write(self, group: Sequence[_Pending]) -> None:
        committing = False
        try:
            with self._recorder.transaction(commit=True) as session:
                positions = self._recorder.write_group(session, [p.write for p in group])
                committing = True
        except DATABASE_UNAVAILABLE_ERRORS as error:
            raise DatabaseUnavailable(saved_unknown=committing) from error
        for pending, position in zip(group, positions, strict=True):
            pending.position = position

    def _write_alone(self, pending: _Pending) -> None:
        try:
            self._write([pending])
        except Exception as error:  # handed to the waiting request, which raises it
            pending.error = error


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
