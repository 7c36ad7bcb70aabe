"""Spreading a large command's pure per-item work over forked worker processes (issue #10).

An import's lines are checked, built into events and encoded one by one, each independently
of the others and without the database (application.imports): about 80 µs of Python a line,
the largest part of a 100,000-line import. Here that work is split into chunks of items and
run in worker processes forked from this one, so that they start at once with everything the
work reads already in memory (the lines, the chart, the rules: nothing is pickled to them),
and return only their results. Everything that needs the database stays in the caller.

A fork copies a process that holds database connections and, in the API, other threads. So
a worker first gives up the parent's connections without closing them (`in_worker`, e.g.
application.event_store.leave_to_parent: any later use of the database in the worker is an
error), does only the given work, and ends with os._exit (multiprocessing's own end of a
forked worker), which runs no finaliser that could touch what the parent still uses. It
takes the default SIGTERM, ignores SIGINT and dies with the importing process. Where
plain fork is not available (not Linux), or one process is asked for, the work runs here.
"""

from __future__ import annotations

import ctypes
import itertools
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

Result = TypeVar("Result")

# The work of each running split, by number: a forked worker finds its own here (inherited
# with the parent's memory), so the work itself is never pickled.
_work: dict[int, tuple[Callable[[int, int], Any], Callable[[], None]]] = {}
_numbers = itertools.count()
_work_lock = threading.Lock()


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def run_chunks(
    work: Callable[[int, int], Result],
    count: int,
    chunk_size: int,
    processes: int,
    in_worker: Callable[[], None],
    done: Callable[[int], None],
) -> list[Result]:
    """`work(start, stop)` for consecutive chunks of `chunk_size` items of `count`, in
    `processes` forked worker processes (each running `in_worker` first), results in the
    order of the chunks; `done(items)` is told how many items are done, in order, as chunks
    finish. An exception raised by a chunk is raised here, the first chunk's first."""
    bounds = [(start, min(start + chunk_size, count)) for start in range(0, count, chunk_size)]
    if processes <= 1 or len(bounds) <= 1 or not can_fork():
        results = []
        for start, stop in bounds:
            results.append(work(start, stop))
            done(stop)
        return results
    with _work_lock:
        number = next(_numbers)
        _work[number] = (work, in_worker)
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(
            max_workers=min(processes, len(bounds)),
            mp_context=context,
            initializer=_start_worker,
            initargs=(number, os.getpid()),
        ) as pool:
            futures = [pool.submit(_run, number, start, stop) for start, stop in bounds]
            results = []
            try:
                for future, (_, stop) in zip(futures, bounds, strict=True):
                    results.append(future.result())
                    done(stop)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
            return results
    finally:
        with _work_lock:
            del _work[number]


def _start_worker(number: int, parent: int) -> None:
    _end_with(parent)
    # A fork keeps the parent's signal handlers: the API server's (uvicorn's) only set a
    # flag on SIGTERM and SIGINT, so a worker lived through the SIGTERM that ends the pool's
    # other workers when one dies, and the import waited for it forever. A worker has
    # nothing to clean up: SIGTERM ends it; Ctrl-C is the importing process's to handle
    # (it stops the pool), and no signal is written to the parent's wakeup fd (asyncio's).
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _work[number][1]()


def _run(number: int, start: int, stop: int) -> Any:
    return _work[number][0](start, stop)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _end_with(parent: int) -> None:
    """Linux: this worker is killed when the importing process ends (kill -9, the out-of-
    memory killer). Otherwise it lived on for ever, blocked on the pool's pipes, holding
    copies of the importing process's sockets: the API's port (a restarted server could not
    listen) and the client's connection (its request never ended). The signal comes when
    the thread that forked it ends: `run_chunks`'s, which outlives the pool."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except AttributeError:  # not Linux
        return
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it ended before that was asked
        os._exit(1)
