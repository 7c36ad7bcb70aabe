"""Pausing Python's cyclic garbage collector while a bulk job runs.

A command that builds thousands of aggregates before one save (a day's file, a batch), or a
read-model rebuild that makes millions of objects, creates no reference cycles worth a
collection: reference counting frees its garbage. Yet the collector, triggered by the
allocations, walks every object of the process again and again as they pile up: about a
fifth of a 10,000-line import's time, and a sixth of a SQLite rebuild's CPU, when measured
(docs/performance.md). So it is paused while such a job runs and set back after as it was.
A pause is bounded by the job's own limits (MAX_IMPORT_LINES, MAX_BATCH_SIZE, a rebuild's
end); with several at once (threads of the API), the collector resumes when the last one
ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_paused = 0
_resume = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a bulk command (if it was running)."""
    global _paused, _resume
    with _lock:
        if _paused == 0:
            _resume = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if _paused == 0 and _resume:
                gc.enable()
