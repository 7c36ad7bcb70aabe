"""Benchmark: the floor under the bulk row on SQLite, in one run (issue #9).

How far below our `record_payments` is the least that issue #9's constraints force (keep
eventsourcing's aggregates' events and Application, keep SQLite, store the bytes the mapper
makes, every receipt checked, idempotent and under optimistic concurrency)? Each stage
records the same receipts (`bench.record_payments.make_commands`) in batches, one COMMIT per
batch, into a fresh SQLite file of the ledger's schema, and is timed per event:

* raw      the very rows (same ids, versions, topics and state bytes) by sqlite3's
           `executemany` into a table of the events' shape (the bulk row's baseline);
* store    those stored events through the ledger's recorder (`insert_events`) in the
           ledger's transaction: what the recorder adds to the raw insert;
* bytes    each receipt's stored events (the mapper's bytes, written as `ReceiptEncoder`
           writes them) from fields worked out before timing, without making the events
           themselves, then `store`: the JSON alone;
* floor    each receipt's Received and Allocated events made by eventsourcing's own event
           constructors from fields worked out before timing (no check of any field: no
           fund match, no fingerprint, no card-number or length checks, no ids to derive),
           each encoded by the ledger's mapper (`to_stored_event`), then `store`: the least
           that keeps eventsourcing's events and the mapper's bytes;
* floor, one-step  the same events and bytes by `ReceiptEncoder` (application/receipt_encoding,
           the way `record_payments` makes them), then `store`;
* rules, bytes  every rule of the command (`_receipt_arguments`: fund match, access, counter,
           fingerprint; `Payment.receipt_fields`: field checks, ids) then bytes and `store`:
           the checks with nothing of eventsourcing's events (neither their objects, nor
           postings, nor views);
* checked  `new_receipt` (every rule of the command: fund match, access, counter, fingerprint,
           `receipt_fields`' checks and ids, postings) then `store`: our path without the
           outcomes' views and the period gate;
* ours     `record_payments` itself (views, period gate, payer details, outcomes).

Idempotency and optimistic concurrency cost nothing per event beyond the insert: both are
the events table's unique index on (originator id, version), which every stage but raw
inserts into (raw's table has it too). Each stage's figure is wall time and process CPU,
medians over --repeats; stages run in a rotated order per repeat (the machine is shared).

    .venv/bin/python -m bench.bulk_floor [--receipts 10000] [--batch 1000] [--repeats 5]

This is a measurement, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from application.ledger import CommandContext, IncomeLedger, RecordPayment
from application.receipt_encoding import _ALLOCATED, _RECEIVED
from bench import record_payments
from domain.payment import Payment
from runtime.collector import collector_paused

Fields = tuple[dict[str, Any], dict[str, Any] | None]
_PAYMENT_TOPIC = get_topic(Payment)


def receipt_fields(ledger: IncomeLedger, commands: Sequence[RecordPayment]) -> list[Fields]:
    """Each command's checked fields (`Payment.receipt_fields`), worked out untimed."""
    ctx = CommandContext("bench")
    chart = ledger.chart()
    return [
        Payment.receipt_fields(**ledger._receipt_arguments(command, ctx, chart))
        for command in commands
    ]


def constructed_events(fields: Fields) -> list[Payment.Event]:
    """A receipt's events by eventsourcing's event constructors, as
    `Payment.receipt_events` makes them, from fields already checked."""
    received, allocated = fields
    return Payment.events_of_fields(dict(received), allocated)


def stored_only(fields: Fields) -> list[StoredEvent]:
    """A receipt's stored events (the mapper's bytes, as `ReceiptEncoder` writes them)
    without making the events: the JSON alone."""
    received, allocated = fields
    payment_id = received["id"]
    state = {**received, "originator_topic": _PAYMENT_TOPIC}
    del state["id"]
    state["timestamp"] = Payment.Received.create_timestamp()
    kinds = [(_RECEIVED, Payment.INITIAL_VERSION, _RECEIVED.state(state))]
    if allocated is not None:
        state = {
            **allocated,
            "timestamp": Payment.Allocated.create_timestamp(),
            "idempotency_key": None,
            "fingerprint": None,
        }
        kinds.append((_ALLOCATED, Payment.INITIAL_VERSION + 1, _ALLOCATED.state(state)))
    return [
        StoredEvent(payment_id, version, kind.topic, kind.state_bytes(state))
        for kind, version, state in kinds
    ]


def store(ledger: IncomeLedger, stored: list[Any]) -> None:
    """The stored events through the ledger's recorder, one transaction."""
    with ledger._transaction():
        ledger.recorder.insert_events(stored)


def stage_store(ledger: IncomeLedger, batch: Sequence[Any]) -> int:
    stored = [event for receipt in batch for event in receipt]
    store(ledger, stored)
    return len(stored)


def stage_floor(ledger: IncomeLedger, batch: Sequence[Fields]) -> int:
    to_stored = ledger.mapper.to_stored_event
    stored = [to_stored(event) for fields in batch for event in constructed_events(fields)]
    store(ledger, stored)
    return len(stored)


def stage_bytes(ledger: IncomeLedger, batch: Sequence[Fields]) -> int:
    stored = [event for fields in batch for event in stored_only(fields)]
    store(ledger, stored)
    return len(stored)


def stage_rules_bytes(ledger: IncomeLedger, batch: Sequence[RecordPayment]) -> int:
    ctx = CommandContext("bench")
    chart = ledger.chart()
    stored = [
        event
        for command in batch
        for event in stored_only(
            Payment.receipt_fields(**ledger._receipt_arguments(command, ctx, chart))
        )
    ]
    store(ledger, stored)
    return len(stored)


def stage_one_step(ledger: IncomeLedger, batch: Sequence[Fields]) -> int:
    encode = ledger._receipt_encoder.encode
    stored = [event for fields in batch for event in encode(*fields)[1]]
    store(ledger, stored)
    return len(stored)


def stage_checked(ledger: IncomeLedger, batch: Sequence[RecordPayment]) -> int:
    ctx = CommandContext("bench")
    chart = ledger.chart()
    receipts = [ledger.new_receipt(command, ctx, chart) for command in batch]
    stored = [event for _, encoded in receipts for event in encoded.stored]
    store(ledger, stored)
    return len(stored)


def stage_ours(ledger: IncomeLedger, batch: Sequence[RecordPayment]) -> int:
    outcomes = ledger.record_payments(batch, CommandContext("bench"))
    return sum(outcome.payment["version"] for outcome in outcomes)


Stage = Callable[[IncomeLedger, Sequence[Any]], int]


def timed_ledger_stage(
    backend: record_payments.SQLiteBackend, batches: Sequence[Sequence[Any]], stage: Stage
) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and events of one stage over every batch, fresh database.
    The collector is paused as `record_payments` pauses it, for every stage alike."""
    with record_payments.ledger_on(backend.fresh()) as ledger:
        backend.settle()
        events = 0
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            with collector_paused():
                events += stage(ledger, batch)
        return time.perf_counter() - wall, time.process_time() - cpu, events


def timed_raw(
    backend: record_payments.SQLiteBackend, batches: Sequence[Sequence[Any]]
) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and rows of sqlite3's executemany + COMMIT per batch."""
    backend.fresh()
    connection = backend.raw_connect()
    try:
        backend.raw_create_table(connection)
        groups = [
            [
                (e.originator_id.bytes, e.originator_version, e.topic, e.state)
                for receipt in batch
                for e in receipt
            ]
            for batch in batches
        ]
        backend.settle()
        wall, cpu = time.perf_counter(), time.process_time()
        for group in groups:
            backend.raw_insert_many(connection, group)
            connection.commit()
        return (
            time.perf_counter() - wall,
            time.process_time() - cpu,
            sum(len(group) for group in groups),
        )
    finally:
        connection.close()


STAGES = ("raw", "store", "bytes", "floor, one-step", "floor", "rules, bytes", "checked", "ours")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bulk_floor", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--receipts", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    backend = record_payments.SQLiteBackend()
    print(backend.describe())
    results: dict[str, list[tuple[float, float, int]]] = {stage: [] for stage in STAGES}
    try:
        for repeat in range(args.repeats):
            commands = record_payments.make_commands(args.receipts, f"floor{repeat}", repeat)
            command_batches = [
                commands[i : i + args.batch] for i in range(0, len(commands), args.batch)
            ]
            # The checked fields and the stored events, worked out untimed on a scratch
            # ledger (the stored rows are the raw and store stages' input).
            with record_payments.ledger_on(backend.fresh()) as scratch:
                fields = receipt_fields(scratch, commands)
                encode = scratch._receipt_encoder.encode
                stored = [encode(*f)[1] for f in fields]
            field_batches = [fields[i : i + args.batch] for i in range(0, len(fields), args.batch)]
            stored_batches = [stored[i : i + args.batch] for i in range(0, len(stored), args.batch)]
            runs: dict[str, tuple[Stage | None, Sequence[Sequence[Any]]]] = {
                "raw": (None, stored_batches),
                "store": (stage_store, stored_batches),
                "bytes": (stage_bytes, field_batches),
                "floor": (stage_floor, field_batches),
                "floor, one-step": (stage_one_step, field_batches),
                "rules, bytes": (stage_rules_bytes, command_batches),
                "checked": (stage_checked, command_batches),
                "ours": (stage_ours, command_batches),
            }
            order = STAGES[repeat % len(STAGES) :] + STAGES[: repeat % len(STAGES)]
            for stage in order:
                run, batches = runs[stage]
                results[stage].append(
                    timed_raw(backend, batches)
                    if run is None
                    else timed_ledger_stage(backend, batches, run)
                )
                wall, cpu, events = results[stage][-1]
                print(
                    f"  repeat {repeat + 1} {stage:>16}: {events / wall:>9,.0f} events/s, "
                    f"{wall / events * 1e6:6.2f} us wall, {cpu / events * 1e6:6.2f} us CPU"
                    " an event"
                )
    finally:
        backend.close()
    print_table(results)
    return 0


def print_table(results: dict[str, list[tuple[float, float, int]]]) -> None:
    """Medians per stage: events/s, us an event (wall and CPU), ratios to raw."""

    def median_of(stage: str, which: int) -> float:
        return statistics.median(run[which] / run[2] for run in results[stage])

    raw_wall, raw_cpu = median_of("raw", 0), median_of("raw", 1)
    print(
        f"\n{'stage':>16} | {'events/s':>9} | {'us/event wall':>13} | {'us/event CPU':>12} "
        "| ratio, wall | ratio, CPU"
    )
    for stage in STAGES:
        wall, cpu = median_of(stage, 0), median_of(stage, 1)
        print(
            f"{stage:>16} | {1 / wall:>9,.0f} | {wall * 1e6:>13.2f} | {cpu * 1e6:>12.2f} "
            f"| {raw_wall / wall:>11.3f} | {raw_cpu / cpu:.3f}"
        )
    print(
        "ratio: raw's time an event over the stage's (medians of the repeats); CPU: the "
        "process's CPU time, steadier than wall time on a shared machine"
    )


if __name__ == "__main__":
    raise SystemExit(main())
