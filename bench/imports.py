"""Benchmark: importing one large day's file, against raw driver INSERTs (issue #10).

A measurement, not a test: it asserts nothing about speed. For each backend, on a fresh
database every time, it measures:

* app   `application.imports.import_file` on an Allpay file of --lines lines (90% with a
        valid council tax reference, allocated at once: 2 events; 10% to suspense: 1 event),
        with the import rules of --rules rules none of which matches (so every line is tried
        against all of them before the funds' reference rules), from the bytes to the commit:
        parsing, checking every line, the receipts' events and the batch event, in one
        transaction;
* raw   --lines rows (the same number as the file's lines: the app's own Received event
        rows, read back untimed) inserted with the bare driver into a table of the
        ledger_events shape in one transaction: psycopg2 `execute_values` on PostgreSQL,
        sqlite3 `executemany` on SQLite;
* raw all events   every row the app recorded for the file, inserted the same way (for
        the cost per stored row).

It prints medians over --repeats and the ratio app lines/s over raw rows/s (the issue's
goal: >= 0.5).

`--statement` measures a bank statement's day instead (`measure_statement`): a camt.053
file of --lines credit lines, imported into a ledger that already holds the receipts some
of its lines pay in, so that its lines go through matching as a real day's do; the raw
baseline inserts as many rows as the file has lines.

    .venv/bin/python -m bench.imports [--lines 100000] [--repeats 3] [--rules 20]
        [--statement] [--backends sqlite,postgresql] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from application.import_rules import add_rule
from application.imports import import_file
from application.ledger import CommandContext, IncomeLedger, RecordPayment
from bench.record_payments import (
    DEFAULT_PG_ADMIN_URL,
    DEFAULT_PG_DB,
    Backend,
    PostgresBackend,
    Row,
    SQLiteBackend,
    console,
    ledger_on,
    notifications_after,
)
from bench.record_payments import run_raw as record_payments_raw
from domain.limits import uk_today
from domain.sample_chart import COUNCIL_TAX

SUSPENSE_EVERY = 10  # one line in ten has a reference no fund takes


def allpay_file(lines: int, days_back: int = 1, tag: int = 0) -> bytes:
    """An Allpay file of `lines` £1.00 lines of one UK day (`days_back` days ago, yesterday by
    default), with its trailers; files of different `tag`s share no reference."""
    day = (uk_today() - timedelta(days=days_back)).strftime("%d/%m/%Y")
    rows = []
    for n in range(lines):
        if n % SUSPENSE_EVERY:
            number = (tag * lines + n) % 10**7
            reference = COUNCIL_TAX.reference_rule.with_check_digit(f"{number:07d}")
        else:
            reference = f"X{tag:02d}{n:07d}"
        rows.append(f"{'335610':>7}{reference:<16}{'1.00':>9}P{day}")
    trailer = [
        f"Total Amount Updated onto System: {f'{lines}.00':>17}",
        f"Total Transactions updated onto System: {lines:>17}",
    ]
    return "\r\n".join([*rows, "", *trailer, ""]).encode()


def add_rules(ledger: Any, count: int) -> None:
    """Rules a line of the file never matches (narrative text no line carries)."""
    ctx = CommandContext("bench")
    for n in range(count):
        rule = {"name": f"unused {n}", "narrative_contains": f"NOSUCH{n}", "fund_code": "CT"}
        add_rule(ledger, rule, ctx, "bench")


def run_app(backend: Backend, content: bytes, rules: int) -> tuple[float, list[Row]]:
    url = backend.fresh()
    with ledger_on(url) as ledger:
        add_rules(ledger, rules)
        backend.settle()
        before = ledger.max_position()
        start = time.perf_counter()
        outcome = import_file(ledger, content, CommandContext("bench"), file_name="big.txt")
        seconds = time.perf_counter() - start
        if not outcome.recorded:
            raise RuntimeError("the file was not imported")
        rows = [
            Row(n.originator_id, n.originator_version, n.topic, n.state)
            for n in notifications_after(ledger, after=before)
        ]
    return seconds, rows


def run_raw(backend: Backend, rows: list[Row]) -> float:
    """Seconds to insert the rows with the bare driver in one commit."""
    return record_payments_raw(backend, "batched", 0, rows, [len(rows)]).seconds


def measure(backend: Backend, lines: int, rules: int) -> dict[str, Any]:
    content = allpay_file(lines)
    app_seconds, rows = run_app(backend, content, rules)
    received = [row for row in rows if row.topic.endswith("Payment.Received")]
    if len(received) != lines:
        raise RuntimeError(f"{len(received)} receipts recorded for {lines} lines")
    return {
        "app_seconds": app_seconds,
        "app_events": len(rows),
        "raw_seconds": run_raw(backend, received),
        "raw_all_seconds": run_raw(backend, rows),
        "file_bytes": len(content),
    }


# ---- a bank statement's day -----------------------------------------------------------------

# What a council's account receives in a day, by the statement's credit lines: mostly payers'
# own transfers quoting their account (new receipts, allocated: never matched, as the payer's
# account names them), some lines quoting nothing usable (new receipts in suspense, tried
# against every matching rule and matching none), and the bankings of money the ledger
# already holds, each linked to what it pays in: one line per cheque banked (rule 1, a
# receipt of the amount), the Allpay settlement of yesterday's file (rule 2, the file's
# total) and the telephone payments' daily settlement (rule 3, a channel's day).
CHEQUE_EVERY = 20  # one line in 20 banks one cheque recorded at the counter
UNKNOWN_EVERY = 20  # one line in 20 quotes nothing a fund takes
ALLPAY_LINES = 1_000  # yesterday's Allpay file: its receipts are £1.00 (allpay_file)
TELEPHONE_RECEIPTS = 50  # today's telephone payments, £7.00 each
# Amounts kept apart so that each banking line has exactly one candidate: a payer's line is
# never matched; an unknown line 10.00 + n pence, a cheque 200.00 + n pence (n < 5,000 at
# 100,000 lines); the Allpay settlement 1,000.00; the telephone day 350.00.
UNKNOWN_FROM_PENCE = 1_000
CHEQUE_FROM_PENCE = 20_000
TELEPHONE_PENCE = 700


@dataclass(frozen=True)
class StatementDay:
    """A statement file and what its import should do with its lines."""

    content: bytes
    lines: int
    linked: int  # lines paying in receipts already recorded
    cheques: list[RecordPayment]
    telephone: list[RecordPayment]


def statement_day(lines: int) -> StatementDay:
    """A camt.053 statement of `lines` credit lines booked today (StatementDay's mix)."""
    today = uk_today()
    cheques, telephone, entries, total = [], [], [], 0
    banked_from = lines - lines // CHEQUE_EVERY - 2  # the bankings come last, as banks list
    for n in range(lines):
        if n < banked_from and n % UNKNOWN_EVERY == UNKNOWN_EVERY - 1:
            pence, text = UNKNOWN_FROM_PENCE + n // UNKNOWN_EVERY, f"GIRO CREDIT {n:06d}"
        elif n < banked_from:
            number = n % 10**7
            pence = 1_200 + n % 5_000
            text = COUNCIL_TAX.reference_rule.with_check_digit(f"{number:07d}")
        elif n == lines - 2:
            pence, text = ALLPAY_LINES * 100, "ALLPAY LTD SETTLEMENT"
        elif n == lines - 1:
            pence, text = TELEPHONE_RECEIPTS * TELEPHONE_PENCE, "CARD SERVICES IVR SETTLEMENT"
        else:
            k = n - banked_from
            pence, text = CHEQUE_FROM_PENCE + k, f"CHEQUE DEPOSIT {k:06d}"
            reference = COUNCIL_TAX.reference_rule.with_check_digit(f"{k + 5_000_000:07d}")
            cheques.append(RecordPayment("cheque", pence, reference, external_id=f"chq-{k}"))
        entries.append(_camt_credit(n, pence, text, today.isoformat()))
        total += pence
    for n in range(TELEPHONE_RECEIPTS):
        reference = COUNCIL_TAX.reference_rule.with_check_digit(f"{n + 6_000_000:07d}")
        telephone.append(
            RecordPayment("telephone", TELEPHONE_PENCE, reference, external_id=f"ivr-{n}")
        )
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
        "<GrpHdr><MsgId>BENCH</MsgId></GrpHdr><Stmt><Id>BENCH1</Id>"
        "<Acct><Id><IBAN>GB33BUKB20201555555555</IBAN></Id><Ccy>GBP</Ccy></Acct>"
        f"{_camt_balance('OPBD', 0, today.isoformat())}"
        f"{_camt_balance('CLBD', total, today.isoformat())}"
        + "".join(entries)
        + "</Stmt></BkToCstmrStmt></Document>"
    ).encode()
    return StatementDay(content, lines, len(cheques) + 2, cheques, telephone)


def _pounds(pence: int) -> str:
    return f"{pence // 100}.{pence % 100:02d}"


def _camt_balance(code: str, pence: int, day: str) -> str:
    return (
        f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy='GBP'>{_pounds(pence)}"
        f"</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>{day}</Dt></Dt></Bal>"
    )


def _camt_credit(n: int, pence: int, text: str, day: str) -> str:
    return (
        f"<Ntry><Amt Ccy='GBP'>{_pounds(pence)}</Amt><CdtDbtInd>CRDT</CdtDbtInd>"
        f"<RvslInd>false</RvslInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>{day}</Dt></BookgDt>"
        f"<ValDt><Dt>{day}</Dt></ValDt><AcctSvcrRef>B{n:07d}</AcctSvcrRef><BkTxCd><Domn>"
        "<Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>OTHR</SubFmlyCd></Fmly></Domn></BkTxCd>"
        f"<NtryDtls><TxDtls><Refs><EndToEndId>E2E{n:07d}</EndToEndId></Refs><RmtInf>"
        f"<Ustrd>{text}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>"
    )


def record_earlier(ledger: IncomeLedger, day: StatementDay) -> None:
    """What the statement's bankings pay in, recorded before it (untimed): the cheques and
    telephone payments, and yesterday's Allpay file."""
    ctx = CommandContext("bench")
    for start in range(0, len(day.cheques), 1_000):
        ledger.record_payments(day.cheques[start : start + 1_000], ctx)
    ledger.record_payments(day.telephone, ctx)
    import_file(ledger, allpay_file(ALLPAY_LINES, tag=99), ctx, file_name="allpay.txt")


def run_statement(backend: Backend, day: StatementDay, rules: int) -> tuple[float, list[Row]]:
    """Seconds to import the statement into a ledger holding what it pays in; the rows the
    import stored, and a check that it linked and recorded the lines it should."""
    url = backend.fresh()
    with ledger_on(url) as ledger:
        add_rules(ledger, rules)
        record_earlier(ledger, day)
        backend.settle()
        before = ledger.max_position()
        start = time.perf_counter()
        outcome = import_file(ledger, day.content, CommandContext("bench"), file_name="day.xml")
        seconds = time.perf_counter() - start
        if not outcome.recorded:
            raise RuntimeError("the statement was not imported")
        batch = ledger.repository.get(outcome.batch_id)
        outcomes = [line.outcome for line in batch.lines]
        if outcomes.count("reconciled") != day.linked or len(outcomes) != day.lines:
            raise RuntimeError(
                f"{outcomes.count('reconciled')} of {len(outcomes)} lines linked, expected "
                f"{day.linked} of {day.lines}"
            )
        rows = [
            Row(n.originator_id, n.originator_version, n.topic, n.state)
            for n in notifications_after(ledger, after=before)
        ]
    return seconds, rows


def measure_statement(backend: Backend, lines: int, rules: int) -> dict[str, Any]:
    """A statement's day (statement_day) against the bare driver's insert of as many rows
    as the file has lines: the import's Received rows, then its other rows (allocations,
    the banked receipts' paid-in notes) to make up the number."""
    day = statement_day(lines)
    app_seconds, rows = run_statement(backend, day, rules)
    received = [row for row in rows if row.topic.endswith("Payment.Received")]
    if len(received) != lines - day.linked:
        raise RuntimeError(f"{len(received)} receipts recorded for {lines - day.linked} lines")
    others = [row for row in rows if not row.topic.endswith("Payment.Received")]
    baseline = (received + others)[:lines]
    return {
        "app_seconds": app_seconds,
        "app_events": len(rows),
        "raw_seconds": run_raw(backend, baseline),
        "raw_all_seconds": run_raw(backend, rows),
        "file_bytes": len(day.content),
        "linked": day.linked,
    }


def summarise(runs: list[dict[str, Any]], lines: int) -> dict[str, Any]:
    app = statistics.median(run["app_seconds"] for run in runs)
    raw = statistics.median(run["raw_seconds"] for run in runs)
    raw_all = statistics.median(run["raw_all_seconds"] for run in runs)
    events = runs[0]["app_events"]
    return {
        "lines": lines,
        "app_seconds": app,
        "app_lines_per_second": lines / app,
        "app_events": events,
        "raw_seconds": raw,
        "raw_rows_per_second": lines / raw,
        "raw_all_seconds": raw_all,
        "raw_all_rows_per_second": events / raw_all,
        "ratio": raw / app,
        "ratio_all_events": raw_all / app,
        "file_bytes": runs[0]["file_bytes"],
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.imports", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rules", type=int, default=20, help="import rules, none matching")
    parser.add_argument(
        "--statement", action="store_true", help="a camt.053 statement's day (measure_statement)"
    )
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument("--pg-db", default=DEFAULT_PG_DB, help="scratch database (dropped!)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if set(args.backends) - {"sqlite", "postgresql"}:
        parser.error("backends are sqlite and postgresql")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    what = "a camt.053 statement" if args.statement else "an Allpay file"
    measure_one = measure_statement if args.statement else measure
    console.print(
        f"[bold]imports benchmark[/]: {what} of {args.lines:,} lines, {args.rules} "
        f"import rules, {args.repeats} repeats"
    )
    results = {}
    for name in args.backends:
        backend: Backend = (
            SQLiteBackend() if name == "sqlite" else PostgresBackend(args.pg_admin_url, args.pg_db)
        )
        try:
            console.print(f"  {name}: {backend.describe()}")
            measure_one(backend, 200, args.rules)  # untimed warm-up
            runs = []
            for repeat in range(args.repeats):
                runs.append(measure_one(backend, args.lines, args.rules))
                console.print(
                    f"  repeat {repeat + 1}/{args.repeats} {name}: app "
                    f"{runs[-1]['app_seconds']:.2f}s, raw {runs[-1]['raw_seconds']:.2f}s"
                )
            results[name] = summarise(runs, args.lines)
        finally:
            backend.close()
    for name, row in results.items():
        console.print(
            f"{name}: import {row['lines']:,} lines in {row['app_seconds']:.2f}s "
            f"({row['app_lines_per_second']:,.0f} lines/s, {row['app_events']:,} events); raw "
            f"{row['lines']:,} rows {row['raw_seconds']:.2f}s "
            f"({row['raw_rows_per_second']:,.0f} rows/s); app/raw {row['ratio']:.2f}x "
            f"(all {row['app_events']:,} events raw: {row['raw_all_seconds']:.2f}s, "
            f"{row['ratio_all_events']:.2f}x)"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"json": str(args.json)}, "results": results}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
