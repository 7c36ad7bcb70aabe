"""Benchmark: the exceptions report's pages at scale, each in a new process (issue #10).

A measurement, not a test. `build` makes one ledger that stays (a SQLite file or a
PostgreSQL database, untimed): --files Allpay files of about --lines £1.00 receipts each,
one per day back from yesterday (each file one line longer than the one before, so no two
totals are alike); the oldest --paid-in of them paid in by a statement line of the file's
total booked the next day (every receipt of them linked, as most of a council's are); and
a statement of today with 5 credit lines no receipt explains.

Each time is also given as the child's own CPU time (`CPU`: time.process_time, the
client's share only; on a machine shared with other work, the wall time is mostly waiting).

`measure` then runs, in alternated pairs (--pairs), the code of each PYTHONPATH given
(--code OLD --code NEW: a worktree of main, then this one) in a child process that opens
the ledger (untimed) and times, as the API's GET /reconciliation/exceptions makes them:

* cold     (the first --cold-pairs pairs) the stored books deleted first: the first page (limit 100) folds the whole store
           (a new process after a books format change), and stores its books;
* stored   a new process: the first page from the books just stored (the last cold
           child's, the same for every code: one format); then, in the same process, a
           later page (offset --offset, at the same position);
* import   a new process: the first page from the stored books; the import of a
           statement of 5 lines no receipt explains (its own), and the first page after.

Every child prints a digest of each page it made (JSON, and the whole report as CSV): the
pages of one state (cold, stored) must be identical for every code (asserted). And the
size of the books stored.

    .venv/bin/python -m bench.exceptions_scale build --url sqlite:////tmp/x.db [--files 5]
        [--lines 20000] [--paid-in 0]
    .venv/bin/python -m bench.exceptions_scale measure --url URL --code OLD --code NEW
        [--pairs 3] [--offset 50000] [--cold-pairs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from application.imports import import_file
from bench.auto_link import statement
from bench.exceptions import OFFICER, forget_stored_books
from bench.imports import allpay_file
from bench.record_payments import ledger_on
from domain.limits import uk_today
from income_ledger.bootstrap import build_ledger
from income_ledger.settings import Settings

# The child: only what old and new code both have (the API route's own steps).
CHILD = r"""
import hashlib, json, sys, time
from application import reconciliation as rec
from application.imports import import_file
from application.ledger import CommandContext
from income_ledger.bootstrap import build_ledger
from income_ledger.settings import Settings

url, tag, offset = sys.argv[1], sys.argv[2], int(sys.argv[3])
ledger = build_ledger(Settings(database_url=url), check_schema=False)

def page(offset):
    books = rec.kept_books(ledger)
    if hasattr(rec, "exceptions_report_page"):  # (the new code: the page's rows only)
        made = rec.exceptions_report_page(ledger, 100, offset, books=books)
        return made | {"position": books.position}, books
    report = rec.exceptions(ledger, books=books)
    return rec.exceptions_page(report, 100, offset) | {"position": books.position}, books

def digest(value):
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]

out = {}
started, cpu = time.perf_counter(), time.process_time()
first, books = page(0)
out["first page"] = time.perf_counter() - started
out["first page CPU"] = time.process_time() - cpu
out["digest"] = [digest(first), digest(rec.exceptions_csv(rec.exceptions(ledger, books=books)))]
out["total"] = first["total"]
if tag == "stored":
    started, cpu = time.perf_counter(), time.process_time()
    later, _ = page(offset)
    out["later page"] = time.perf_counter() - started
    out["later page CPU"] = time.process_time() - cpu
    out["digest"].append(digest(later))
if tag == "import":
    started = time.perf_counter()
    import_file(ledger, STATEMENT, CommandContext("officer:bench"), file_name=tag + ".sta")
    out["statement import"] = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    after, _ = page(0)
    out["page after import"] = time.perf_counter() - started
    out["page after import CPU"] = time.process_time() - cpu
    out["total after"] = after["total"]
print(json.dumps(out))
ledger.close()
"""


def build(url: str, files: int, lines: int, paid_in: int) -> None:
    with ledger_on(url) as ledger:
        started = time.perf_counter()
        for n in range(files):
            content = allpay_file(lines + n, n + 1, n)
            import_file(ledger, content, OFFICER, file_name=f"day{n}.txt")
            print(f"file {n + 1} of {files}: {time.perf_counter() - started:.0f} s", flush=True)
        for n in range(files - paid_in, files):
            import_file(ledger, paying_in(lines + n, n), OFFICER, file_name=f"pays{n}.sta")
        import_file(ledger, statement(5), OFFICER, file_name="stmt.sta")
        print(f"built: {ledger.max_position()} events in {time.perf_counter() - started:.0f} s")


def paying_in(pounds: int, days_back: int) -> bytes:
    """An MT940 statement of one credit line of `pounds`, booked `days_back` days ago."""
    day = (uk_today() - timedelta(days=days_back)).strftime("%y%m%d")
    rows = [f":20:PAYS{days_back}", ":25:20201555555555", ":28C:1/1", f":60F:C{day}GBP0,00"]
    rows += [f":61:{day}{day[2:]}C{pounds},00NTRFNONREF//P{days_back}", ":86:ALLPAY LTD"]
    rows.append(f":62F:C{day}GBP{pounds},00")
    return ("\r\n".join(rows) + "\r\n-").encode()


def child(code: Path, url: str, tag: str, offset: int, n: int) -> dict[str, object]:
    # (its lines' bank references its own: a statement imported again records nothing)
    unique = f"S{n}{tag[:1].upper()}{zlib.crc32(str(code).encode()) % 1000}"
    content = statement(5, unique).replace(b"//B", f"//{unique}B".encode())
    source = CHILD.replace("STATEMENT", repr(content))
    env = os.environ | {"PYTHONPATH": str(code)}
    out = subprocess.run(
        [sys.executable, "-c", source, url, tag, str(offset)],
        env=env,
        cwd=code,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"the child with {code} failed:\n{out.stderr}")
    return json.loads(out.stdout.splitlines()[-1])


def measure(url: str, codes: list[Path], pairs: int, offset: int, cold_pairs: int) -> None:
    """Per pair, each step for each code in turn (the first code first in odd pairs, last
    in even ones): cold, then stored (from the books the last cold child stored: one
    format, the same bytes for every code), then a statement import and the page after."""
    times: dict[str, dict[str, list[float]]] = {str(code): {} for code in codes}
    ledger = build_ledger(Settings(database_url=url), check_schema=False)
    # Each code's own stored books (codes of two books formats each ignore the other's):
    # put back before each of its children, kept after.
    kept: dict[str, Any] = {}
    try:
        for n in range(pairs):
            order = codes if n % 2 == 0 else codes[::-1]
            for step in ("cold", "stored", "import")[0 if n < cold_pairs else 1 :]:
                digests = set()
                for code in order:
                    if step == "cold":
                        forget_stored_books(ledger)
                    elif str(code) in kept:
                        put_stored_books(ledger, kept[str(code)])
                    result = child(code, url, step, offset, n)
                    kept[str(code)] = stored_books_row(ledger)
                    print(f"pair {n + 1} {step} {code}: {result}, books {stored_size(ledger)}")
                    digests.add(tuple(result.pop("digest")))
                    for key, value in result.items():
                        if isinstance(value, float):
                            times[str(code)].setdefault(f"{step}: {key}", []).append(value)
                if step != "import":  # (each code imports a statement of its own)
                    assert len(digests) == 1, f"the codes' pages differ: {digests}"
    finally:
        ledger.close()
    for code, measured in times.items():
        print(code)
        for name, values in measured.items():
            print(
                f"  {name}: median {statistics.median(values):.3f} s of "
                f"{[round(v, 3) for v in values]}"
            )
    if len(codes) == 2:
        old, new = (times[str(code)] for code in codes)
        for name in old:
            ratio = statistics.median(old[name]) / statistics.median(new[name])
            print(f"ratio old / new, {name}: {ratio:.1f}")


def stored_books_row(ledger: Any) -> Any:
    from sqlalchemy import select

    from application import event_store
    from application.books_snapshot import books_snapshot_table as table

    with event_store.engine(ledger.recorder).connect() as connection:
        return connection.execute(select(table)).first()


def put_stored_books(ledger: Any, row: Any) -> None:
    from application import event_store
    from application.books_snapshot import books_snapshot_table as table

    forget_stored_books(ledger)
    if row is not None:
        with event_store.engine(ledger.recorder).begin() as connection:
            connection.execute(table.insert().values(dict(row._mapping)))


def stored_size(ledger: object) -> str:
    from sqlalchemy import func, select

    from application import event_store
    from application.books_snapshot import books_snapshot_table as table

    engine = event_store.engine(ledger.recorder)  # type: ignore[attr-defined]
    with engine.connect() as connection:
        row = connection.execute(
            select(table.c.format, table.c.position, func.length(table.c.books))
        ).first()
    return "none" if row is None else f"format {row[0]} at {row[1]}: {row[2] / 1e6:.2f} MB"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("build")
    make.add_argument("--url", required=True)
    make.add_argument("--files", type=int, default=5)
    make.add_argument("--lines", type=int, default=20_000)
    make.add_argument("--paid-in", type=int, default=0)
    run = sub.add_parser("measure")
    run.add_argument("--url", required=True)
    run.add_argument("--code", type=Path, action="append", required=True)
    run.add_argument("--pairs", type=int, default=3)
    run.add_argument("--offset", type=int, default=50_000)
    run.add_argument("--cold-pairs", type=int, default=1, help="pairs that begin cold")
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args.url, args.files, args.lines, args.paid_in)
    else:
        measure(
            args.url,
            [code.resolve() for code in args.code],
            args.pairs,
            args.offset,
            args.cold_pairs,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
