"""Benchmark: the exceptions report on a ledger of many receipts (issue #10).

A measurement, not a test. It builds one ledger (untimed): --files Allpay files of --lines
£1.00 lines each, one per day back from yesterday (90% allocated at once, 10% to suspense;
none paid in by a statement line, so every receipt is a row of the report), and a bank
statement of today with 5 credit lines no receipt explains. Then, in alternated pairs
(--pairs), each after one new receipt is recorded (untimed, so each read has news):

* read afresh   `exceptions(ledger, books=read_books(ledger))`: every receipt and import
                event read and decoded from the event store, as before 2026-12-01;
* kept books    `exceptions(ledger)`: the books this process keeps, brought up to date
                with the events recorded since its previous call (kept_books);

and, as the raw baseline of the same run, the bare driver's SELECT of the rows that
read_books decodes (their topics), not decoded. The first kept call of the process (which
folds the whole history) is timed once, before the pairs. It prints medians and the ratio.
Then --pairs alternated pairs of a statement import (5 lines no receipt explains), its
matching reading the books afresh (as before) and from the kept books.

With --old PATH (a worktree of the code to compare with, e.g. main's), the first call of a
new process (a CLI call, a worker just started): --pairs alternated pairs of the same child
process, `python -c FIRST_CALL`, with the old code on its PYTHONPATH, then this code, each
after one new receipt (untimed); the child times `exceptions(ledger)` alone (the ledger
opened first, untimed) and the parent the whole process. The books stored are those of the
set-up's statement import (its matching kept them) or of a previous child; with --cold they
are deleted before each of this code's children (it folds the whole store, and stores it).
Then, in this process, the cost of loading and decoding the stored books, and of encoding
them (as a process does every SNAPSHOT_EVERY_EVENTS events it folds).

    .venv/bin/python -m bench.exceptions [--files 5] [--lines 20000] [--pairs 5]
        [--backend sqlite|postgresql] [--pg-db income_ledger_bench_exceptions]
        [--old /work/wt/NAME-old [--cold] [--first-calls-only]]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eventsourcing.utils import get_topic
from sqlalchemy import delete

from application import books_snapshot, event_store, reconciliation
from application.books_snapshot import EXCEPTIONS_BOOKS, books_snapshot_table
from application.imports import import_file
from application.ledger import CommandContext, IncomeLedger, RecordPayment
from application.reconciliation import BOOKS_SNAPSHOT_FORMAT, BooksFold, exceptions, read_books
from bench.auto_link import statement
from bench.imports import allpay_file
from bench.record_payments import DEFAULT_PG_ADMIN_URL, ledger_on, make_backend
from projections.event_reader import fetch_all, placeholder

OFFICER = CommandContext("officer:bench")
# The child process of a first-call measurement: only what old and new code both have.
FIRST_CALL = """
import sys, time
from application.reconciliation import exceptions
from income_ledger.bootstrap import build_ledger
from income_ledger.settings import Settings
ledger = build_ledger(Settings(database_url=sys.argv[1]), check_schema=False)
started = time.perf_counter()
report = exceptions(ledger)
print(time.perf_counter() - started, len(report["unmatched_receipts"]))
ledger.close()
"""


def raw_rows(ledger: IncomeLedger) -> Callable[[], int]:
    """The bare driver's SELECT of the rows read_books reads (by topic), not decoded."""
    engine = event_store.engine(ledger.recorder)
    assert engine is not None
    table = event_store.events_table_name(ledger.recorder)
    topics = [get_topic(cls) for cls in BooksFold.TOPICS]
    mark = placeholder(engine)
    sql = (
        f"SELECT id, originator_id, originator_version, topic, state FROM {table} "
        f"WHERE topic IN ({', '.join([mark] * len(topics))}) ORDER BY id"
    )
    return lambda: len(fetch_all(engine, sql, tuple(topics)))


def build(ledger: IncomeLedger, files: int, lines: int) -> None:
    for n in range(files):
        import_file(ledger, allpay_file(lines, n + 1, n), OFFICER, file_name=f"day{n}.txt")
    import_file(ledger, statement(5), OFFICER, file_name="stmt.sta")


def record_one(ledger: IncomeLedger, n: int) -> None:
    command = RecordPayment(channel="cash", amount_pence=100 + n, reference=f"NEW{n}")
    ledger.record_payment(command, OFFICER)


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def statement_imports(ledger: IncomeLedger, pairs: int) -> None:
    """A statement of 5 lines no receipt explains imported in alternated pairs: its
    matching reading the books afresh (as before 2026-12-01: read_books in place of
    kept_books) and from the kept books."""
    as_before = {"kept_books": lambda led: reconciliation.read_books(led)}
    times: dict[str, list[float]] = {"read afresh": [], "kept books": []}
    for n in range(pairs):
        for name in times:
            content = statement(5, f"PAIR{n}{name[0]}")
            with patched(reconciliation, as_before if name == "read afresh" else {}):
                seconds, _ = timed(
                    lambda c=content, f=f"s{n}{name[0]}.sta": import_file(
                        ledger, c, OFFICER, file_name=f
                    )
                )
            times[name].append(seconds)
    print_medians("statement import", times, "read afresh", "kept books")


def print_medians(what: str, times: dict[str, list[float]], slow: str, fast: str) -> None:
    """Each way's median seconds with its runs, then the ratio of `slow`'s median to `fast`'s."""
    for name, measured in times.items():
        label = f"{what} ({name})" if what else name
        print(
            f"{label}: median {statistics.median(measured):.3f} s "
            f"of {[round(t, 3) for t in measured]}"
        )
    ratio = statistics.median(times[slow]) / statistics.median(times[fast])
    print(f"ratio {what + ' ' if what else ''}{slow} / {fast}: {ratio:.1f}")


def first_call(code: Path, url: str) -> tuple[float, float, int]:
    """A new process's first exceptions report with `code` on its PYTHONPATH: the call's
    seconds, the whole process's, and the receipts it lists."""
    env = os.environ | {"PYTHONPATH": str(code)}
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", FIRST_CALL, url], env=env, cwd=code, capture_output=True, text=True
    )
    whole = time.perf_counter() - started
    if out.returncode:
        raise SystemExit(f"the child with {code} failed:\n{out.stderr}")
    seconds, receipts = out.stdout.split()
    return float(seconds), whole, int(receipts)


def first_calls(
    ledger: IncomeLedger, url: str, old: Path, pairs: int, n: int, cold: bool = False
) -> None:
    """Alternated pairs of a new process's first report, old code then this code, each
    after one new receipt; `cold`: with no books stored for this code's process (deleted
    before it: it folds the whole store, and stores it)."""
    new = Path(__file__).resolve().parents[1]
    times: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
    for _ in range(pairs):
        listed = []
        for name, code in (("old", old), ("new", new)):
            n += 1
            record_one(ledger, n)
            if cold and name == "new":
                forget_stored_books(ledger)
            call, whole, receipts = first_call(code, url)
            times[name].append((call, whole))
            listed.append(receipts)
        assert listed[1] == listed[0] + 1, "the new process lists the receipt recorded since"
    label = "no books stored" if cold else "books stored"
    for name, measured in times.items():
        calls = [call for call, _ in measured]
        wholes = [whole for _, whole in measured]
        print(
            f"first call of a new process ({name}, {label}): median "
            f"{statistics.median(calls):.3f} s of {[round(t, 3) for t in calls]}; whole "
            f"process median {statistics.median(wholes):.3f} s"
        )
    ratio = statistics.median(c for c, _ in times["old"]) / statistics.median(
        c for c, _ in times["new"]
    )
    print(f"ratio first call old / new ({label}): {ratio:.1f}")
    stored = books_snapshot.load(ledger, EXCEPTIONS_BOOKS, BOOKS_SNAPSHOT_FORMAT)
    assert stored is not None, "the new process stored its books"
    print(
        f"books stored at position {stored.mark.position}: "
        f"{len(stored.books) / 1e6:.1f} MB compressed"
    )


def forget_stored_books(ledger: IncomeLedger) -> None:
    engine = event_store.engine(ledger.recorder)
    assert engine is not None
    with engine.begin() as connection:
        connection.execute(delete(books_snapshot_table))


def stored_books_costs(ledger: IncomeLedger) -> None:
    """In this process: loading the stored books and decoding them, and encoding them."""
    seconds, fold = timed(lambda: reconciliation._stored_fold(ledger))
    assert fold is not None
    print(f"books loaded from the database and decoded: {seconds:.3f} s")
    seconds, _ = timed(fold.to_snapshot)
    every = reconciliation.SNAPSHOT_EVERY_EVENTS
    print(f"books encoded for storing (at most each {every} events): {seconds:.3f} s")


@contextmanager
def patched(module: Any, names: dict[str, Any]) -> Iterator[None]:
    saved = {name: getattr(module, name) for name in names}
    for name, value in names.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def later_calls(ledger: IncomeLedger, pairs: int) -> None:
    """The report read afresh against the kept books, then statement imports, in pairs."""
    raw = raw_rows(ledger)
    seconds, rows = timed(raw)
    print(f"raw SELECT of the {rows} rows read_books decodes: {seconds:.3f} s")
    seconds, report = timed(lambda: exceptions(ledger))
    receipts = len(report["unmatched_receipts"])
    print(f"kept books, first call of the process: {seconds:.3f} s ({receipts} receipts)")
    fresh: list[float] = []
    kept: list[float] = []
    raws: list[float] = []
    for n in range(pairs):
        record_one(ledger, 2 * n)
        seconds, old = timed(lambda: exceptions(ledger, books=read_books(ledger)))
        fresh.append(seconds)
        record_one(ledger, 2 * n + 1)
        seconds, new = timed(lambda: exceptions(ledger))
        kept.append(seconds)
        raws.append(timed(raw)[0])
        assert len(new["unmatched_receipts"]) == len(old["unmatched_receipts"]) + 1
    assert exceptions(ledger) == exceptions(ledger, books=read_books(ledger))
    times = {"read afresh": fresh, "kept books": kept, "raw SELECT": raws}
    print_medians("", times, "read afresh", "kept books")
    statement_imports(ledger, pairs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-db", default="income_ledger_bench_exceptions")
    parser.add_argument("--old", type=Path, help="a worktree of the code to compare with")
    parser.add_argument(
        "--first-calls-only", action="store_true", help="with --old: measure nothing else"
    )
    parser.add_argument(
        "--cold", action="store_true", help="with --old: delete the stored books each time"
    )
    args = parser.parse_args(argv)
    backend = make_backend(
        args.backend, argparse.Namespace(pg_admin_url=DEFAULT_PG_ADMIN_URL, pg_db=args.pg_db)
    )
    url = backend.fresh()
    with ledger_on(url) as ledger:
        seconds, _ = timed(lambda: build(ledger, args.files, args.lines))
        print(f"built: {ledger.max_position()} events in {seconds:.1f} s ({args.backend})")
        if args.old is not None:
            old = args.old.resolve()
            first_calls(ledger, url, old, args.pairs, 10 * args.pairs, cold=args.cold)
            stored_books_costs(ledger)
        if not args.first_calls_only:
            later_calls(ledger, args.pairs)
    return _done(backend, args)


def _done(backend: Any, args: argparse.Namespace) -> int:
    if args.backend == "postgresql":
        backend._execute(f'DROP DATABASE IF EXISTS "{args.pg_db}" WITH (FORCE)')
    else:
        backend.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
