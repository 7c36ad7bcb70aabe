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

    .venv/bin/python -m bench.exceptions [--files 5] [--lines 20000] [--pairs 5]
        [--backend sqlite|postgresql] [--pg-db income_ledger_bench_exceptions]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from eventsourcing.utils import get_topic

from application import event_store, reconciliation
from application.imports import import_file
from application.ledger import CommandContext, IncomeLedger, RecordPayment
from application.reconciliation import BooksFold, exceptions, read_books
from bench.auto_link import statement
from bench.imports import allpay_file
from bench.record_payments import DEFAULT_PG_ADMIN_URL, PostgresBackend, SQLiteBackend, ledger_on
from projections.event_reader import fetch_all, placeholder

OFFICER = CommandContext("officer:bench")


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
    for name, measured in times.items():
        print(
            f"statement import ({name}): median {statistics.median(measured):.3f} s "
            f"of {[round(t, 3) for t in measured]}"
        )
    ratio = statistics.median(times["read afresh"]) / statistics.median(times["kept books"])
    print(f"ratio statement import read afresh / kept books: {ratio:.1f}")


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-db", default="income_ledger_bench_exceptions")
    args = parser.parse_args(argv)
    if args.backend == "sqlite":
        backend: Any = SQLiteBackend()
    else:
        backend = PostgresBackend(DEFAULT_PG_ADMIN_URL, args.pg_db)
    with ledger_on(backend.fresh()) as ledger:
        seconds, _ = timed(lambda: build(ledger, args.files, args.lines))
        print(f"built: {ledger.max_position()} events in {seconds:.1f} s ({args.backend})")
        raw = raw_rows(ledger)
        seconds, rows = timed(raw)
        print(f"raw SELECT of the {rows} rows read_books decodes: {seconds:.3f} s")
        seconds, report = timed(lambda: exceptions(ledger))
        receipts = len(report["unmatched_receipts"])
        print(f"kept books, first call of the process: {seconds:.3f} s ({receipts} receipts)")
        fresh: list[float] = []
        kept: list[float] = []
        raws: list[float] = []
        for n in range(args.pairs):
            record_one(ledger, 2 * n)
            seconds, old = timed(lambda: exceptions(ledger, books=read_books(ledger)))
            fresh.append(seconds)
            record_one(ledger, 2 * n + 1)
            seconds, new = timed(lambda: exceptions(ledger))
            kept.append(seconds)
            raws.append(timed(raw)[0])
            assert len(new["unmatched_receipts"]) == len(old["unmatched_receipts"]) + 1
        assert exceptions(ledger) == exceptions(ledger, books=read_books(ledger))
        for name, times in (("read afresh", fresh), ("kept books", kept), ("raw SELECT", raws)):
            print(
                f"{name}: median {statistics.median(times):.3f} s of {[round(t, 3) for t in times]}"
            )
        ratio = statistics.median(fresh) / statistics.median(kept)
        print(f"ratio read afresh / kept books: {ratio:.1f}")
        statement_imports(ledger, args.pairs)
    if args.backend == "postgresql":
        backend._execute(f'DROP DATABASE IF EXISTS "{args.pg_db}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
