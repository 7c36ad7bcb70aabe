"""The linking run after an import (reconciliation.link_after_recording) against the whole
run (`reconcile link`), after one Allpay file of many lines, on SQLite.

    .venv/bin/python -m bench.auto_link --lines 20000 --repeats 5 [--statement] [--waiting N]

`--statement` first imports a bank statement of today whose line waits for a link (a
payer's transfer in suspense; `--waiting N`: N such lines, 1 unless told): the run after
the import then reads the books of its days instead of stopping at "no line waits". The
two runs are timed in turn, `--repeats` times, so that both see the same machine load; the
medians and their ratio are printed. Neither links anything (the file's receipts pay in no
line), so every run reads the same books. With `--statement`, each repeat then imports
another statement of N such lines, timed: its matching reads what the lines already
waiting may pay in (reconciliation.Claims).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from application.imports import import_file
from application.ledger import CommandContext
from application.reconciliation import link_after_recording, link_counted_twice
from bench.imports import allpay_file
from domain.limits import uk_today
from domain.sample_chart import SAMPLE_FUNDS
from income_ledger.bootstrap import build_ledger, init_database
from income_ledger.settings import Settings

OFFICER = CommandContext("officer:bench")


def statement(waiting: int = 1, tag: str = "BENCH1") -> bytes:
    """An MT940 statement of today with `waiting` credit lines no receipt explains (12.34,
    12.35, ...: no £1.00 line of the Allpay file, nor its total)."""
    day = uk_today().strftime("%y%m%d")
    rows = [f":20:{tag}", ":25:20201555555555", ":28C:1/1", f":60F:C{day}GBP100,00"]
    total = 10_000
    for n in range(waiting):
        pence = 1_234 + n
        total += pence
        rows += [f":61:{day}{day[2:]}C{pence // 100},{pence % 100:02d}NTRFNONREF//B{n}"]
        rows += [":86:NOBODY KNOWN"]
    rows.append(f":62F:C{day}GBP{total // 100},{total % 100:02d}")
    return ("\r\n".join(rows) + "\r\n-").encode()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--statement", action="store_true")
    parser.add_argument("--waiting", type=int, default=1)
    args = parser.parse_args(argv)
    settings = Settings(database_url=f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}")
    init_database(settings)
    ledger = build_ledger(settings)
    ledger.add_funds(SAMPLE_FUNDS, CommandContext("bench:setup"))
    if args.statement:
        import_file(ledger, statement(args.waiting), OFFICER, file_name="stmt.sta")
    started = time.perf_counter()
    outcome = import_file(ledger, allpay_file(args.lines), OFFICER, file_name="day.txt")
    print(f"import of {args.lines} lines: {time.perf_counter() - started:.2f} s")
    runs = {
        "reconcile link (whole history)": lambda: link_counted_twice(ledger, OFFICER),
        "run after the import": lambda: link_after_recording(ledger, outcome.link_from),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            assert run() == [], "the bench's runs link nothing"
            times[name].append(time.perf_counter() - started)
    medians = [statistics.median(measured) for measured in times.values()]
    for (name, measured), median in zip(times.items(), medians, strict=True):
        print(f"{name}: median {median:.3f} s of {[round(t, 3) for t in measured]}")
    print(f"ratio (after the import / whole history): {medians[1] / medians[0]:.3f}")
    if args.statement:
        imports = []
        for n in range(args.repeats):
            content = statement(args.waiting, f"BENCH{n + 2}")
            started = time.perf_counter()
            import_file(ledger, content, OFFICER, file_name=f"stmt{n + 2}.sta")
            imports.append(time.perf_counter() - started)
        print(
            f"import of a statement of {args.waiting} waiting lines: median "
            f"{statistics.median(imports):.3f} s of {[round(t, 3) for t in imports]}"
        )
    ledger.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
