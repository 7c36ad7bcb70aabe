"""Commands that build thousands of aggregates before one save (a day's file, a batch).

Every receipt of such a command stays alive until the batch is saved, and Python's cyclic
garbage collector, triggered by the allocations, walks all of them (and every other object
of the process) again and again as they pile up: about a fifth of a 10,000-line import's
time when measured (docs/performance.md). They are freed by reference counting once the
command ends, so the collector is paused while a bulk command runs and resumed after it.
A pause is bounded by the command's own limits (MAX_IMPORT_LINES, MAX_BATCH_SIZE); with
several at once (threads of the API), the collector resumes when the last one ends.
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
