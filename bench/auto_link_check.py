"""What the linking worker (application.auto_link) costs the write path: an ask (what
POST /payments adds to a request) and the check the worker makes, at most once per
LEDGER_AUTO_LINK_DELAY_SECONDS, before any run, on PostgreSQL (a scratch database).

    .venv/bin/python -m bench.auto_link_check [--receipts 100000] [--between 2000]
        [--repeats 5] [--pg-db income_ledger_bench_auto_link]

The database gets a bank statement with one line waiting for a link (a payer's transfer of
12.34 in suspense, booked today), an Allpay file of 20,000 lines and --receipts receipts of
£1.00 to £99.99 recorded in batches; then, --repeats times: the check of a fresh worker (it
reads the import events of the last weeks: once per process and UK day), and the check after
--between more receipts (what a busy process's worker reads every 2 s). None of the asks
calls for a run: the line is larger than any receipt.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence

from application.auto_link import LinkingWorker, WaitingLines
from application.imports import import_file
from application.ledger import CommandContext, RecordPayment
from bench.auto_link import statement
from bench.http_env import DEFAULT_PG_ADMIN_URL, Database, run_cli
from bench.imports import allpay_file
from domain.limits import uk_today
from domain.sample_chart import SAMPLE_FUNDS
from income_ledger.bootstrap import build_ledger
from income_ledger.settings import Settings

OFFICER = CommandContext("officer:bench")
BATCH = 1000


def receipts(ledger, count: int, rng: random.Random) -> None:
    for start in range(0, count, BATCH):
        commands = [
            RecordPayment("cash", rng.randint(100, 1_233), "UNKNOWN")
            for _ in range(min(BATCH, count - start))
        ]
        ledger.record_payments(commands, OFFICER)


def ms(seconds: list[float]) -> str:
    return f"median {statistics.median(seconds) * 1000:.2f} ms of {[round(s * 1000, 2) for s in seconds]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receipts", type=int, default=100_000)
    parser.add_argument("--between", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument("--pg-db", default="income_ledger_bench_auto_link", help="dropped!")
    args = parser.parse_args(argv)
    db = Database(args.pg_admin_url, args.pg_db)
    db.recreate()
    run_cli(db.url, "db", "init")
    rng = random.Random(2026)
    with build_ledger(Settings(database_url=db.url)) as ledger:
        ledger.add_funds(SAMPLE_FUNDS, CommandContext("bench:setup"))
        import_file(ledger, statement(), OFFICER, file_name="stmt.sta")
        import_file(ledger, allpay_file(20_000), OFFICER, file_name="day.txt")
        receipts(ledger, args.receipts, rng)
        print(f"events: {ledger.max_position()}")
        today = uk_today()
        asks = {today: 5_000}  # more than the waiting line: no run
        first, after_more = [], []
        for _ in range(args.repeats):
            lines = WaitingLines(ledger)
            started = time.perf_counter()
            assert lines.may_pay_in(asks) is None
            first.append(time.perf_counter() - started)
            receipts(ledger, args.between, rng)
            started = time.perf_counter()
            assert lines.may_pay_in(asks) is None
            after_more.append(time.perf_counter() - started)
        print(f"first check of a process (the weeks' import events): {ms(first)}")
        print(f"check after {args.between} more receipts: {ms(after_more)}")
        worker = LinkingWorker(ledger, delay_s=lambda: 3600)
        worker.after_receipt(today, 100, "cash")  # the one check; the rest wait an hour
        count = 100_000
        started = time.perf_counter()
        for n in range(count):
            worker.after_receipt(today, 100 + n % 1000, "cash")
        print(
            f"an ask (POST /payments' part): {(time.perf_counter() - started) / count * 1e6:.2f} µs"
        )
        worker.close()
    db.drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
