"""Benchmark: the stored exceptions books' restore check (books_snapshot.mark_at), as
before 2026-12-01's digest (the event's position, id and version) and with it (plus a
SHA-256 of the event's topic and state, which select_notifications fetched already), in
alternated pairs, 2000 of them, on a ledger of 50 payments. A measurement, not a test.

    .venv/bin/python -m bench.mark_check sqlite:////tmp/mark.db
    .venv/bin/python -m bench.mark_check postgresql://postgres@127.0.0.1:5432/SCRATCH_DB
"""

import statistics
import sys
import time

from application import books_snapshot
from income_ledger.bootstrap import build_ledger, init_database
from income_ledger.settings import Settings
from tests.application.test_statement_imports import TODAY, govuk_pay

url = sys.argv[1]
s = Settings(database_url=url)
init_database(s)
led = build_ledger(s)
for i in range(50):
    govuk_pay(led, 100 + i, TODAY, f"m-{i}", "cash")
pos = led.max_position() - 1


def old():
    found = led.recorder.select_notifications(start=pos, limit=1, inclusive_of_start=True)
    return (pos, str(found[0].originator_id), found[0].originator_version)


def new():
    return books_snapshot.mark_at(led, pos)


o, n = [], []
for _ in range(2000):
    for f, acc in ((old, o), (new, n)):
        t = time.perf_counter()
        f()
        acc.append(time.perf_counter() - t)
mo, mn = statistics.median(o) * 1e6, statistics.median(n) * 1e6
print(f"{url.split(':')[0]}: mark check old {mo:.1f} us, new {mn:.1f} us, new/old {mn / mo:.3f}")
led.close()
