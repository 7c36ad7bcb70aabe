"""Benchmark: the exceptions report and a statement's import view when a statement's many
waiting lines are tried against a month of imported files (Matcher.files_together).

A measurement, not a test. It builds one ledger (untimed): --files Allpay files of --lines
£1.00 lines each, one per UK day back from yesterday (a month by default), and a statement
of today with --waiting credit lines no receipt explains (12.34, 12.35, ...: each line is
tried against every rule, and now against two or three of the files of its window too;
the line of each two or three files' total is offered them). Then --pairs alternated
pairs of the same child process, the code of --old (a worktree, e.g. main's) on its
PYTHONPATH, then this code's, each timing, on the same database:

* books     read_books(ledger): every book event read and decoded (the fold);
* report    exceptions(ledger, books=those books): the report's rows and every waiting
            line's candidates (_choices);
* view      get_import(ledger, the statement): GET /imports/{id}, its lines' candidates;
* raw       the bare driver's SELECT of the rows read_books decodes, not decoded (the
            baseline of the same run: bench.exceptions.raw_rows).

It prints each one's medians, old and new, and the ratios new/old and report/raw.

    .venv/bin/python -m bench.files_together --old /work/wt/NAME-old [--files 30]
        [--lines 1000] [--waiting 100000] [--pairs 3] [--backend sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from application.imports import import_file
from application.ledger import CommandContext
from bench.auto_link import statement
from bench.imports import allpay_file
from bench.record_payments import DEFAULT_PG_ADMIN_URL, ledger_on, make_backend

OFFICER = CommandContext("officer:bench")
# The child: only what old and new code both have.
CHILD = """
import json, sys, time
from uuid import UUID
from application.imports import get_import
from application.reconciliation import exceptions, read_books
from bench.exceptions import raw_rows
from income_ledger.bootstrap import build_ledger
from income_ledger.settings import Settings
ledger = build_ledger(Settings(database_url=sys.argv[1]), check_schema=False)
times = {}
started = time.perf_counter()
rows = raw_rows(ledger)()
times["raw"] = time.perf_counter() - started
started = time.perf_counter()
books = read_books(ledger)
times["books"] = time.perf_counter() - started
started = time.perf_counter()
report = exceptions(ledger, books=books)
times["report"] = time.perf_counter() - started
started = time.perf_counter()
view = get_import(ledger, UUID(sys.argv[2]))
times["view"] = time.perf_counter() - started
lines = report["unmatched_statement_lines"]
times["offered"] = sum(1 for row in lines if row["candidates"])
times["lines"] = len(lines)
print(json.dumps(times))
ledger.close()
"""


def child(code: Path, url: str, batch_id: str) -> dict[str, float]:
    env = os.environ | {"PYTHONPATH": str(code)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, url, batch_id],
        env=env,
        cwd=code,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"the child with {code} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="a worktree to compare with")
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--lines", type=int, default=1_000)
    parser.add_argument("--waiting", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-db", default="income_ledger_bench_files_together")
    args = parser.parse_args(argv)
    backend = make_backend(
        args.backend, argparse.Namespace(pg_admin_url=DEFAULT_PG_ADMIN_URL, pg_db=args.pg_db)
    )
    url = backend.fresh()
    started = time.perf_counter()
    with ledger_on(url) as ledger:
        for n in range(args.files):
            content = allpay_file(args.lines, n + 1, n)
            import_file(ledger, content, OFFICER, file_name=f"day{n}.txt")
        content = statement(args.waiting)
        batch_id = str(import_file(ledger, content, OFFICER, file_name="stmt.sta").batch_id)
    print(
        f"built {args.files} files of {args.lines} lines and a statement of {args.waiting} "
        f"waiting lines on {args.backend} in {time.perf_counter() - started:.0f} s"
    )
    new = Path(__file__).resolve().parents[1]
    child(new, url, batch_id)  # untimed: the database's pages read once into the OS cache
    times: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    for _ in range(args.pairs):
        for name, code in (("old", args.old), ("new", new)):
            for what, value in child(code, url, batch_id).items():
                times[name].setdefault(what, []).append(value)
    for what in ("raw", "books", "report", "view"):
        medians = {name: statistics.median(times[name][what]) for name in times}
        runs = {name: [round(t, 3) for t in times[name][what]] for name in times}
        print(
            f"{what}: old median {medians['old']:.3f} s {runs['old']}, new median "
            f"{medians['new']:.3f} s {runs['new']}, new/old {medians['new'] / medians['old']:.2f}"
        )
    for name in times:
        report, raw = (
            statistics.median(times[name]["report"]),
            statistics.median(times[name]["raw"]),
        )
        print(
            f"{name}: report/raw {report / raw:.1f}; lines {times[name]['lines'][0]:.0f}, "
            f"offered a choice {times[name]['offered'][0]:.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
