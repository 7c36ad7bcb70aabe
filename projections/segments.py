"""Splitting the event log's position range across worker processes (issue #9).

Replay and `audit verify` do the same work for every event, independently of the others
(replay adds up postings; the chain check of a row needs only the stored link before it), so
each worker process opens its own connection, reads one range of positions with the bare
driver and returns a partial result that the caller joins, in position order, into exactly
what one process reading everything would have found.

Workers come from a `forkserver` (never a plain fork of a process holding connections and
threads); the module of the function they run is preloaded there once, so a worker starts in
milliseconds rather than importing the application again.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from runtime.processes import MAX_PROCESSES, default_processes

MIN_EVENTS_PER_PROCESS = 10_000  # a range never holds fewer, whatever was asked for
# Unasked, split only a log this big per process: starting the workers (a forkserver that
# imports the application, then a fork, a connection and a page of reads each) cost 0.5-1.3 s
# on the 2 shared cores measured, more than a whole 21,000-event verify or replay
# (docs/performance.md).
DEFAULT_EVENTS_PER_PROCESS = 250_000

Result = TypeVar("Result")


def process_count(events: int, processes: int | None) -> int:
    """How many processes to split `events` over: `processes` if given (each with at least
    MIN_EVENTS_PER_PROCESS events), else one per core for every DEFAULT_EVENTS_PER_PROCESS
    events, so a small ledger is read by one."""
    if processes is not None and not 1 <= processes <= MAX_PROCESSES:
        raise ValueError(f"processes must be 1 to {MAX_PROCESSES}")
    wanted = default_processes() if processes is None else processes
    per_process = MIN_EVENTS_PER_PROCESS if processes else DEFAULT_EVENTS_PER_PROCESS
    return max(1, min(wanted, events // per_process))


def split(last: int, count: int) -> list[tuple[int, int | None]]:
    """`count` consecutive (after, stop) position ranges covering (0, last], then onwards:
    the last range has no stop, so it reads to the end of the log as one reader would."""
    bounds = [last * index // count for index in range(count)]
    return [(after, stop) for after, stop in zip(bounds, [*bounds[1:], None], strict=True)]


def run_in_processes(
    work: Callable[..., Result], arguments: Sequence[tuple[Any, ...]]
) -> list[Result]:
    """`work(*args)` for each tuple of `arguments`, each in its own process, results in the
    order given. An exception raised by a range is raised here, the lowest range's first, so
    the error reported is the one a single reader would have met first."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", work.__module__])
    with ProcessPoolExecutor(max_workers=len(arguments), mp_context=context) as pool:
        futures = [pool.submit(work, *args) for args in arguments]
        return [future.result() for future in futures]
