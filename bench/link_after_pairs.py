"""Benchmark: the linking run after an import (reconciliation.link_after_recording) of old
and new code, in alternated pairs of child processes on one SQLite ledger (issue #10).

A measurement, not a test. It builds (untimed) a bank statement of today whose --waiting
lines wait for a link, then one Allpay file of --lines £1.00 lines (90% allocated at once:
their Allocated events are among what the run's books read). Then --pairs times: a child
process with the old code on its PYTHONPATH (--old PATH, a worktree), then one with this
code, each timing `link_after_recording(ledger, today)` alone (the ledger opened first,
untimed; it links nothing, so each reads the same books); and, as the raw baseline of the
same run, the bare driver's SELECT of every event the run's scope covers (after
scope_start), not decoded. It prints the medians and the ratios.

    .venv/bin/python -m bench.link_after_pairs --old /work/wt/NAME-old [--lines 20000]
        [--waiting 5] [--pairs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from application import event_store
from application.imports import import_file
from application.reconciliation import scope_start
from bench.auto_link import OFFICER, statement
from bench.imports import allpay_file
from domain.limits import uk_today
from domain.sample_chart import SAMPLE_FUNDS
from income_ledger.bootstrap import build_ledger, init_database
from income_ledger.settings import Settings
from projections.event_reader import fetch_all, placeholder

RUN = """
import sys, time
from application.reconciliation import link_after_recording
from domain.limits import uk_today
from income_ledger.bootstrap import build_ledger
from income_ledger.settings import Settings
ledger = build_ledger(Settings(database_url=sys.argv[1]), check_schema=False)
started = time.perf_counter()
assert link_after_recording(ledger, uk_today()) == []
print(time.perf_counter() - started)
ledger.close()
"""


def child(code: Path, url: str) -> float:
    env = os.environ | {"PYTHONPATH": str(code)}
    out = subprocess.run(
        [sys.executable, "-c", RUN, url], env=env, cwd=code, capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"the child with {code} failed:\n{out.stderr}")
    return float(out.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--waiting", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args(argv)
    url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    settings = Settings(database_url=url)
    init_database(settings)
    ledger = build_ledger(settings)
    ledger.add_funds(SAMPLE_FUNDS, OFFICER)
    import_file(ledger, statement(args.waiting), OFFICER, file_name="stmt.sta")
    import_file(ledger, allpay_file(args.lines), OFFICER, file_name="day.txt")
    engine = event_store.engine(ledger.recorder)
    assert engine is not None
    table = event_store.events_table_name(ledger.recorder)
    sql = (
        f"SELECT id, originator_id, originator_version, topic, state FROM {table} "
        f"WHERE id > {placeholder(engine)} ORDER BY id"
    )
    after = scope_start(ledger, uk_today())
    new = Path(__file__).resolve().parents[1]
    times: dict[str, list[float]] = {"old": [], "new": [], "raw SELECT": []}
    for _ in range(args.pairs):
        times["old"].append(child(args.old.resolve(), url))
        times["new"].append(child(new, url))
        started = time.perf_counter()
        rows = len(fetch_all(engine, sql, (after,)))
        times["raw SELECT"].append(time.perf_counter() - started)
    print(f"{ledger.max_position()} events; the run's scope: {rows} events")
    medians = {name: statistics.median(measured) for name, measured in times.items()}
    for name, measured in times.items():
        print(f"{name}: median {medians[name]:.3f} s of {[round(t, 3) for t in measured]}")
    print(f"ratio new / old: {medians['new'] / medians['old']:.2f}")
    raw = medians["raw SELECT"]
    print(f"ratio old / raw: {medians['old'] / raw:.1f}; new / raw: {medians['new'] / raw:.1f}")
    ledger.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
