"""Benchmark: a statement's view (`get_import`, GET /imports/{id}, `import show`) on a
ledger of many receipts (issue #10).

`--files` Allpay files of `--lines` receipts each, then a statement of 5 lines no receipt
explains (they wait in suspense: the view reads books). The view's window starts before
file `--skip` (a bench records everything "now", so scope_start's search by recording
time is patched to that position, as it finds it on a ledger of real days). Timed in
alternated pairs, one new cash receipt recorded before each call:

* windowed read   the view as before: read_books from the window's start (every event of
                  the window decoded on each call)
* kept books      the view now: the books this process keeps, cut at the window's start
                  (BooksFold.since), brought up to date with the events since its last call

and once each: the kept books' first call of a process that starts from the books stored
in the database (a CLI `import show`), and from nothing stored (the fold of the whole
history). Every pair's two views are asserted equal.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from application import books_snapshot, reconciliation
from application.books_snapshot import EXCEPTIONS_BOOKS
from application.imports import get_import, import_file
from application.ledger import IncomeLedger
from application.reconciliation import BOOKS_SNAPSHOT_FORMAT
from bench.auto_link import statement
from bench.exceptions import (
    OFFICER,
    forget_stored_books,
    patched,
    print_medians,
    record_one,
    timed,
)
from bench.imports import allpay_file
from bench.record_payments import DEFAULT_PG_ADMIN_URL, ledger_on, make_backend


def build(ledger: IncomeLedger, files: int, lines: int, skip: int) -> tuple[Any, int]:
    """The statement's batch id, and the position its view's window starts after."""
    start = 0
    for n in range(files):
        if n == skip:
            start = ledger.max_position()
        import_file(ledger, allpay_file(lines, n + 1, n), OFFICER, file_name=f"day{n}.txt")
    batch_id = import_file(ledger, statement(5), OFFICER, file_name="stmt.sta").batch_id
    return batch_id, start


def windowed(led: IncomeLedger, after: int = 0) -> reconciliation.Books:
    return reconciliation.read_books(led, after)


def forget_kept_books(ledger: IncomeLedger) -> None:
    """This process's kept books, as a new process starts: none."""
    reconciliation._KEPT_BOOKS.pop(ledger, None)


def measure(ledger: IncomeLedger, batch_id: Any, pairs: int) -> None:
    view = lambda: get_import(ledger, batch_id)  # noqa: E731
    waiting = sum(1 for line in view()["lines"] if line["status"] == "suspense")
    print(f"statement lines in suspense: {waiting}")
    stored = books_snapshot.saved_position(ledger, EXCEPTIONS_BOOKS, BOOKS_SNAPSHOT_FORMAT)
    forget_kept_books(ledger)
    seconds, _ = timed(view)
    print(
        f"kept books, first call, from the books stored in the database at {stored}: "
        f"{seconds:.3f} s"
    )
    forget_stored_books(ledger)
    forget_kept_books(ledger)
    seconds, _ = timed(view)
    print(f"kept books, first call, nothing stored (whole history folded): {seconds:.3f} s")
    times: dict[str, list[float]] = {"windowed read": [], "kept books": []}
    for n in range(pairs):
        results = []
        for index, name in enumerate(times):
            record_one(ledger, 2 * n + index)
            old = {"kept_books": windowed} if name == "windowed read" else {}
            with patched(reconciliation, old):
                seconds, result = timed(view)
            times[name].append(seconds)
            results.append([line["candidates"] for line in result["lines"]])
        assert results[0] == results[1], "the two views differ"
    print_medians("view", times, "windowed read", "kept books")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--lines", type=int, default=2_000)
    parser.add_argument("--skip", type=int, default=1, help="files before the view's window")
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-db", default="importview_bench")
    args = parser.parse_args(argv)
    backend = make_backend(
        args.backend, argparse.Namespace(pg_admin_url=DEFAULT_PG_ADMIN_URL, pg_db=args.pg_db)
    )
    url = backend.fresh()
    try:
        with ledger_on(url) as ledger:
            seconds, (batch_id, start) = timed(
                lambda: build(ledger, args.files, args.lines, args.skip)
            )
            print(
                f"built: {ledger.max_position()} events in {seconds:.1f} s ({args.backend}); "
                f"the view's window starts after position {start}"
            )
            with patched(reconciliation, {"_position_before": lambda *_: start}):
                measure(ledger, batch_id, args.pairs)
    finally:
        if args.backend == "postgresql":
            backend._execute(f'DROP DATABASE IF EXISTS "{args.pg_db}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
