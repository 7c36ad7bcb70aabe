"""`get_import` on a 20,000-line Allpay import, every line in suspense (SQLite): the median
of 5 calls and the statements each ran (docs/performance.md, tenth session, suspwhy).

    PYTHONPATH=. python bench/import_show_reasons.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy.event

from application import event_store
from application.imports import get_import, import_file
from application.ledger import CommandContext
from income_ledger.bootstrap import build_ledger
from income_ledger.settings import Settings
from tests.application.test_imports import allpay_file, allpay_line

LINES = 20_000
CALLS = 5


def main() -> None:
    db = Path(tempfile.mkdtemp(prefix="income-ledger-bench-")) / "ledger.db"
    settings = Settings(database_url=f"sqlite:///{db}")
    subprocess.run(
        [sys.executable, "-m", "income_ledger.cli", "db", "init"],
        check=True,
        env=os.environ | {"LEDGER_DATABASE_URL": settings.database_url},
        capture_output=True,
    )
    content = allpay_file(*(allpay_line(f"NOSUCH{n:05d}", "1.00", "Z") for n in range(LINES)))
    with build_ledger(settings) as led:
        ctx = CommandContext("officer:bench")
        batch_id = import_file(led, content, ctx, file_name="be.txt").batch_id
        engine = event_store.engine(led.repository.event_store.recorder)
        times, counts = [], []
        for _ in range(CALLS):
            statements: list[str] = []

            def count(*args: object, into: list[str] = statements) -> None:
                into.append(str(args[2]))

            sqlalchemy.event.listen(engine, "before_cursor_execute", count)
            start = time.perf_counter()
            get_import(led, batch_id)
            times.append(time.perf_counter() - start)
            sqlalchemy.event.remove(engine, "before_cursor_execute", count)
            counts.append(len(statements))
    median_ms = statistics.median(times) * 1000
    print(f"get_import, {LINES:,} suspense lines: median {median_ms:.0f} ms, statements {counts}")


if __name__ == "__main__":
    main()
