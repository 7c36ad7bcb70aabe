"""Read-your-writes in an API process: waiting until the read model has applied a position,
woken by the projector's announcement rather than by the next poll.

On PostgreSQL the projector announces each read-model page it commits (NOTIFY on
READ_MODEL_CHANNEL with the page's last position, delivered at its COMMIT, so a listener
that hears it can read it). One thread per process listens and wakes the waiting readers.
The listener reads the position once after its LISTEN began, so what it has heard covers
every page committed before (the read) and after (the announcements): a reader waits for the
announcement without reading the position itself first (a pooled connection's pre-ping,
SELECT and ROLLBACK on every read-your-writes request, whose position the projector has
almost never applied yet), reading it only every WAIT_SLOW_POLL_S in case an announcement is
lost with a dropped connection. Before the listener is up, after it lost its connection,
and on SQLite (which announces nothing), readers poll as `wait_for_position` does.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from typing import Any

from sqlalchemy.engine import Engine

from projections.runner import (
    READ_MODEL_CHANNEL,
    WAIT_SLOW_POLL_S,
    first_line,
    tracked_position,
    wait_for_position,
)
from projections.schema import PROJECTION_NAME, projection_tracking

log = logging.getLogger(__name__)

_POSITION = f"SELECT position FROM {projection_tracking.name} WHERE projection_name = %s"

# The listener ends after this long with no reader waiting (a process that stopped reading
# keeps no connection), and starts again with the next reader.
IDLE_LISTEN_S = 60.0
RECONNECT_S = 1.0


class ReadModelWatch:
    """Waits for read-model positions in one process; `close` ends its listening thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.announces = engine.dialect.name == "postgresql"
        self._heard = 0  # the highest position announced since listening began
        self._changed = threading.Condition()
        self._listening = threading.Event()
        self._closed = threading.Event()
        self._last_wait = time.monotonic()
        self._thread: threading.Thread | None = None

    @property
    def listening(self) -> bool:
        """Whether announcements are being heard now (else readers poll)."""
        return self._listening.is_set()

    def reached(self, position: int) -> bool:
        """Whether `position` is known applied without waiting or reading (an event loop
        may ask: no I/O, no lock)."""
        return self._heard >= position

    def wait(self, position: int, timeout_s: float) -> bool:
        """Whether the read model has applied `position` within `timeout_s` (bounded)."""
        if not self.announces or self._closed.is_set():
            return wait_for_position(self.engine, position, timeout_s)
        self._last_wait = time.monotonic()
        self._start()
        if not self._listening.is_set():
            return wait_for_position(self.engine, position, timeout_s)
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            with self._changed:
                if self._changed.wait_for(
                    lambda: self._heard >= position, max(min(WAIT_SLOW_POLL_S, left), 0)
                ):
                    return True
            # Not heard in time: read it, in case an announcement was lost.
            with self.engine.connect() as connection:  # not held: readers share the pool
                if tracked_position(connection) >= position:
                    return True
            if time.monotonic() >= deadline:
                return False

    def close(self) -> None:
        # Closed first: a listener started after this (were the join below cut short by a
        # Ctrl-C, `is_alive()` answering False on 3.11 while the thread runs) returns at
        # once, and `wait` no longer starts one.
        self._closed.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=2 * RECONNECT_S)

    def _start(self) -> None:
        with self._changed:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._listen, name="read-model-watch", daemon=True
                )
                self._thread.start()

    def _idle(self) -> bool:
        return time.monotonic() - self._last_wait > IDLE_LISTEN_S

    def _listen(self) -> None:
        failing = False  # one warning per outage, not one per attempt
        while not self._closed.is_set():
            raw: Any = None
            try:
                raw = self.engine.raw_connection()
                connection = raw.driver_connection
                connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute(f"LISTEN {READ_MODEL_CHANNEL}")
                    # After LISTEN: a page committed before is in this, any later announced.
                    cursor.execute(_POSITION, (PROJECTION_NAME,))
                    row = cursor.fetchone()
                self._hear_position(int(row[0]) if row else 0)
                failing = False
                self._listening.set()
                if not self._hear(connection):
                    return
            except Exception as error:  # readers poll meanwhile; the log says why
                if not failing:
                    log.warning(
                        "read-model watch lost its connection (%s); readers poll until it is back",
                        first_line(error),
                    )
                failing = True
                if self._idle():  # no reader to wake: the next one starts it again
                    return
                self._closed.wait(RECONNECT_S)
            finally:
                self._listening.clear()
                if raw is not None:
                    with contextlib.suppress(Exception):
                        raw.invalidate()

    def _hear(self, connection: Any) -> bool:
        """Pass announcements on to readers; False when idle or closed (stop listening)."""
        while not self._closed.is_set():
            if self._idle():
                return False
            select.select([connection], [], [], RECONNECT_S)
            connection.poll()
            if not connection.notifies:
                continue
            heard = max(
                (int(n.payload) for n in connection.notifies if n.payload.isdigit()), default=0
            )
            connection.notifies.clear()
            self._hear_position(heard)
        return False

    def _hear_position(self, position: int) -> None:
        with self._changed:
            self._heard = max(self._heard, position)
            self._changed.notify_all()
