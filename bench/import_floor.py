"""Benchmark: the floor under an Allpay import, layer by layer, in one run (issue #10).

Issue #10 asks an import of 100,000 lines to run at >= 0.5 x the rate of a raw
`execute_values` insert of as many rows, measured in the same run. Each imported line
stores two of eventsourcing's events (a Received and an Allocated, `Payment.receipt_events`;
one in ten of this file's lines goes to suspense: Received only), and the file adds one
batch event. How far below the import is the least that keeping those events forces? For
each backend, on a fresh database each time, the same file (`bench.imports.allpay_file`:
£1.00 lines, 90% allocated at once, 20 import rules none of which matches) and the same
rows, each layer is timed as the wall time and the CPU time of this process and of its
worker processes (`getrusage(RUSAGE_CHILDREN)`: the import's forked workers), per line:

* raw            N rows (the import's own Received rows, read back untimed) by the bare
                 driver into a table of the events table's shape, one transaction:
                 psycopg2 `execute_values` / sqlite3 `executemany` (issue #10's baseline);
* raw, all rows  every row the import stored (about 1.9 N events and the batch event)
                 the same way: what a line stores, at the driver's price;
* recorder       those rows, ready (StoredEvents), through the ledger's recorder
                 (`insert_events`: COPY on PostgreSQL, executemany on SQLite) in the
                 ledger's transaction: the least the ledger pays to store them;
* parse          the file's bytes read and parsed (`decode`, `parse_file`), nothing else;
* events+bytes   each line's eventsourcing events and the mapper's bytes for them
                 (`ReceiptEncoder.encode`, as the import makes them) from fields worked
                 out before timing (no rule applied): the least that keeps two
                 eventsourcing events a line, in one process;
* check+encode   every line's command, rules, events, bytes and batch entry
                 (`_LineJob.encode` of all lines) in one process: the workers' whole job;
* import         `import_file`, from the bytes to the commit (workers on, as configured).

Two rows are sums, not runs: "floor, 1 process" = parse + events+bytes + recorder (one
process doing the least a line needs: each line's two events, then the insert), and
"floor, 2 cores" = parse + recorder + events+bytes / 2 (the events made by two worker
processes alongside, as the import does, with nothing for sending them back).

    .venv/bin/python -m bench.import_floor [--lines 100000] [--repeats 3]
        [--backends sqlite,postgresql] [--pg-db income_ledger_import_floor]

This is a measurement, not a test: it asserts nothing about speed. The PostgreSQL scratch
database (--pg-db) is dropped and created again for every layer that writes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent

from application.import_rules import current_rulebook
from application.imports import _command, _LineJob, import_file
from application.ledger import CommandContext, IncomeLedger
from application.periods import calendar, late_receipt
from bench import imports, record_payments
from domain.imports import ImportFormat, decode, parse_file
from domain.payment import Payment
from runtime.collector import collector_paused

RULES = 20  # as bench.table's import row
DEFAULT_PG_DB = "income_ledger_import_floor"

# wall seconds, CPU seconds of this process, CPU seconds of its (waited-for) children
Timing = tuple[float, float, float]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(run: Callable[[], Any]) -> Timing:
    wall, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu, _children_cpu() - children


def run_import(backend: record_payments.Backend, content: bytes) -> tuple[Timing, list[Any]]:
    """`import_file` timed on a fresh ledger with the rules; the rows it stored (untimed)."""
    with record_payments.ledger_on(backend.fresh()) as ledger:
        imports.add_rules(ledger, RULES)
        backend.settle()
        before = ledger.max_position()
        outcomes = []
        timing = timed(
            lambda: outcomes.append(
                import_file(ledger, content, CommandContext("bench"), file_name="big.txt")
            )
        )
        if not outcomes[0].recorded:
            raise RuntimeError("the file was not imported")
        rows = list(record_payments.notifications_after(ledger, after=before))
    return timing, rows


def run_raw(backend: record_payments.Backend, rows: Sequence[Any]) -> Timing:
    """The rows by the bare driver, one transaction (bench.record_payments.run_raw's way)."""
    backend.fresh()
    connection = backend.raw_connect()
    try:
        backend.raw_create_table(connection)
        params = [
            backend.raw_params(
                record_payments.Row(r.originator_id, r.originator_version, r.topic, r.state)
            )
            for r in rows
        ]
        backend.settle()

        def insert() -> None:
            backend.raw_insert_many(connection, params)
            connection.commit()

        return timed(insert)
    finally:
        connection.close()


def run_recorder(backend: record_payments.Backend, rows: Sequence[Any]) -> Timing:
    """The rows, ready as StoredEvents, by the ledger's recorder in its transaction."""
    stored = [StoredEvent(r.originator_id, r.originator_version, r.topic, r.state) for r in rows]
    with record_payments.ledger_on(backend.fresh()) as ledger:
        imports.add_rules(ledger, RULES)
        backend.settle()

        def insert() -> None:
            with collector_paused(), ledger._transaction():
                ledger.recorder.insert_events(stored)

        return timed(insert)


def run_parse(content: bytes) -> Timing:
    def parse() -> None:
        with collector_paused():
            parse_file(decode(content), ImportFormat.ALLPAY)

    return timed(parse)


def line_job(ledger: IncomeLedger, content: bytes) -> _LineJob:
    """The import's job for the file's receipt lines, as `import_file` makes it."""
    parsed = parse_file(decode(content), ImportFormat.ALLPAY)
    sha256 = hashlib.sha256(content).hexdigest()
    return _LineJob(
        ledger,
        list(parsed.lines),
        sha256,
        current_rulebook(ledger).decider(),
        calendar(ledger),
        ledger.chart(),
        CommandContext("bench"),
    )


def run_encode_layers(backend: record_payments.Backend, content: bytes) -> dict[str, Timing]:
    """events+bytes and check+encode, in this process, on a ledger with the rules."""
    with record_payments.ledger_on(backend.fresh()) as ledger:
        imports.add_rules(ledger, RULES)
        job = line_job(ledger, content)
        ctx, chart = job.ctx, job.chart
        fields = []
        for line in job.lines:  # untimed: every rule, once
            command = late_receipt(ledger, _command(line, job.sha256, job.rules), job.periods)
            fields.append(Payment.receipt_fields(**ledger._receipt_arguments(command, ctx, chart)))
        encode = ledger._receipt_encoder.encode

        def events_and_bytes() -> None:
            with collector_paused():
                for received, allocated in fields:
                    encode(received, allocated)

        def check_and_encode() -> None:
            with collector_paused():
                receipts, problems = job.encode(0, len(job.lines))
            if problems or len(receipts) != len(job.lines):
                raise RuntimeError(f"{len(problems)} lines refused")

        return {"events+bytes": timed(events_and_bytes), "check+encode": timed(check_and_encode)}


LAYERS = ("raw", "raw, all rows", "recorder", "parse", "events+bytes", "check+encode", "import")


def measure(backend: record_payments.Backend, lines: int, repeats: int) -> dict[str, list[Timing]]:
    content = imports.allpay_file(lines)
    results: dict[str, list[Timing]] = {layer: [] for layer in LAYERS}
    for repeat in range(repeats):
        # The import first: its stored rows are the raw and recorder layers' input.
        timing, rows = run_import(backend, content)
        results["import"].append(timing)
        received = [r for r in rows if r.topic.endswith("Payment.Received")]
        if len(received) != lines:
            raise RuntimeError(f"{len(received)} receipts recorded for {lines} lines")
        others: dict[str, Callable[[], Timing | dict[str, Timing]]] = {
            "raw": lambda received=received: run_raw(backend, received),
            "raw, all rows": lambda rows=rows: run_raw(backend, rows),
            "recorder": lambda rows=rows: run_recorder(backend, rows),
            "parse": lambda: run_parse(content),
            "encode": lambda: run_encode_layers(backend, content),
        }
        order = list(others)
        order = order[repeat % len(order) :] + order[: repeat % len(order)]
        for name in order:
            got = others[name]()
            for layer, layer_timing in (got if isinstance(got, dict) else {name: got}).items():
                results[layer].append(layer_timing)
        print(
            f"  {backend.name} repeat {repeat + 1}: "
            + ", ".join(f"{layer} {results[layer][-1][0] / lines * 1e6:.2f}" for layer in LAYERS)
            + " us wall a line",
            flush=True,
        )
    return results


def print_table(name: str, lines: int, results: dict[str, list[Timing]]) -> None:
    """Medians per layer in us a line (wall, CPU here, CPU of workers) and ratio to raw."""

    def median(layer: str, which: int) -> float:
        return statistics.median(run[which] for run in results[layer]) / lines * 1e6

    table = {layer: tuple(median(layer, i) for i in range(3)) for layer in LAYERS}
    parse, events, recorder = table["parse"], table["events+bytes"], table["recorder"]
    table["floor, 1 process"] = tuple(
        parse[i] + events[i] + recorder[i] if i < 2 else 0.0 for i in range(3)
    )
    table["floor, 2 cores"] = (
        parse[0] + recorder[0] + events[0] / 2,
        parse[1] + recorder[1],
        events[1],
    )
    raw_wall, raw_cpu = table["raw"][0], table["raw"][1]
    print(
        f"\n{name}, {lines:,} lines, medians of {len(results['raw'])} (us a line)\n"
        f"{'layer':>17} | {'wall':>7} | {'CPU':>7} | {'workers':>7} | raw/layer, wall "
        "| raw/layer, CPU"
    )
    for layer, (wall, cpu, children) in table.items():
        print(
            f"{layer:>17} | {wall:7.2f} | {cpu:7.2f} | {children:7.2f} "
            f"| {raw_wall / wall:15.3f} | {raw_cpu / (cpu + children):.3f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.import_floor", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-admin-url", default=record_payments.DEFAULT_PG_ADMIN_URL)
    parser.add_argument("--pg-db", default=DEFAULT_PG_DB)
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f}, {args.lines:,} lines, {args.repeats} repeats")
    measured = {}
    for name in args.backends.split(","):
        backend = record_payments.make_backend(name, args)
        try:
            print(backend.describe(), flush=True)
            measured[name] = measure(backend, args.lines, args.repeats)
        finally:
            backend.close()
    for name, results in measured.items():
        print_table(name, args.lines, results)
    print(
        f"\nload average {os.getloadavg()[0]:.1f}; raw/layer: raw's wall time a line over "
        "the layer's; workers: CPU of the import's worker processes (the floor, 2 cores row: "
        "the events+bytes CPU, as if spent there); raw/layer, CPU: over this process's and the "
        "workers' CPU together (SQLite's work is in this process; PostgreSQL's server is in "
        "neither)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
