"""Write baselines without HTTP, measured in the same run: bare psycopg2 and the event
store's write pattern in bare SQL, and `IncomeLedger.record_payment` from threads."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import psycopg2
import psycopg2.extras

# ---- 5. write baselines without HTTP ------------------------------------------------------------
from bench.http_env import (
    RAW_TABLE,
    CpuSnapshot,
    Database,
    References,
    console,
    latency_summary,
)
from bench.http_load import LockSampler


def threaded_rate(
    threads: int,
    seconds: float,
    setup: Callable[[int], Any],
    op: Callable[[Any, int], None],
    teardown: Callable[[Any], None],
    pids: dict[str, int],
    db: Database,
    relation: str = "ledger_events",
) -> dict[str, Any]:
    """Run op(state, i) in `threads` threads for `seconds`; ops/s and latency."""
    states = [setup(t) for t in range(threads)]
    start_at = time.monotonic() + 0.5
    end_at = start_at + seconds
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: Counter[str] = Counter()
    lock = threading.Lock()

    def run(t: int) -> None:
        i = 0
        time.sleep(max(0.0, start_at - time.monotonic()))
        while True:
            now = time.monotonic()
            if now >= end_at:
                return
            i += 1
            try:
                op(states[t], i)
            except Exception as error:
                with lock:
                    errors[type(error).__name__] += 1
                continue
            finished = time.monotonic()
            if finished <= end_at:
                latencies[t].append((finished - now) * 1000)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    sampler = LockSampler(db, relation)
    time.sleep(max(0.0, start_at - time.monotonic()))
    before = CpuSnapshot.take(pids, db.name)
    sampler.start()
    for worker in workers:
        worker.join()
    after = CpuSnapshot.take(pids, db.name)
    locks = sampler.stop()
    cores = after.cores_since(before)
    cores["others"] = cores["machine"] - sum(
        v for k, v in cores.items() if k not in ("machine", "postgres (all)")
    )
    for state in states:
        teardown(state)
    pooled = [x for part in latencies for x in part]
    return {
        "threads": threads,
        "ops": len(pooled),
        "per_second": len(pooled) / seconds,
        "latency": latency_summary(pooled),
        "locks": locks,
        "errors": dict(errors),
        "cores": cores,
    }


def raw_write_baselines(
    db: Database, thread_counts: Sequence[int], seconds: float
) -> list[dict[str, Any]]:
    """Bare psycopg2: one event-sized row per INSERT + COMMIT, and the event store's pattern."""
    import uuid

    db.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
    db.execute(
        f"CREATE TABLE {RAW_TABLE} (id BIGSERIAL PRIMARY KEY, originator_id UUID NOT NULL, "
        "originator_version BIGINT NOT NULL, topic TEXT NOT NULL, state BYTEA NOT NULL)"
    )
    db.execute(
        f"CREATE UNIQUE INDEX {RAW_TABLE}_aggregate_idx ON {RAW_TABLE} "
        "(originator_id, originator_version)"
    )
    state = os.urandom(450)
    topic = "domain.payment:Payment.Received"
    insert = (
        f"INSERT INTO {RAW_TABLE} (originator_id, originator_version, topic, state) "
        "VALUES (%s, %s, %s, %s)"
    )
    psycopg2.extras.register_uuid()
    pids = {"bench (this process)": os.getpid()}

    def setup(_: int) -> Any:
        return db.connect()

    def teardown(connection: Any) -> None:
        connection.close()

    def plain(connection: Any, _: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(insert, (uuid.uuid4(), 1, topic, state))
        connection.commit()

    def event_store(connection: Any, _: int) -> None:
        payment = uuid.uuid4()
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {RAW_TABLE} IN EXCLUSIVE MODE")
            cursor.execute(
                insert + ", (%s, %s, %s, %s)",
                (payment, 1, topic, state, payment, 2, topic, state),
            )
            cursor.execute("NOTIFY bench_raw_events")
        connection.commit()

    results = []
    free = db.max_connections() - db.connections_in_use() - 10
    for name, op in (
        ("bare INSERT 1 row + COMMIT", plain),
        ("bare LOCK TABLE + INSERT 2 rows + NOTIFY + COMMIT", event_store),
    ):
        for threads in thread_counts:
            if threads > free:
                console.print(f"[yellow]skipped[/] {name} x{threads}: only {free} connections free")
                continue
            row = threaded_rate(threads, seconds, setup, op, teardown, pids, db, RAW_TABLE)
            row["path"] = name
            results.append(row)
    db.execute(f"DROP TABLE IF EXISTS {RAW_TABLE}")
    return results


def in_process_write_baselines(
    db: Database, thread_counts: Sequence[int], seconds: float, accounts: int, seed: int
) -> list[dict[str, Any]]:
    """`IncomeLedger.record_payment` from threads of one process: the app without HTTP."""
    from application.ledger import CommandContext, RecordPayment
    from income_ledger.bootstrap import build_ledger
    from income_ledger.settings import Settings

    refs = References(accounts)
    tag = "".join(random.SystemRandom().choice("abcdefghjkmnpqrstuvwxyz") for _ in range(6))
    results = []
    with build_ledger(Settings(database_url=db.url)) as ledger:
        ctx = CommandContext("bench:in-process")
        for threads in thread_counts:

            def setup(t: int, threads: int = threads) -> Any:
                return random.Random(seed * 31 + threads * 1000 + t), t

            def op(state: Any, i: int, threads: int = threads) -> None:
                rng, t = state
                ledger.record_payment(
                    RecordPayment(**refs.payment(rng, i, f"hp.{tag}.n{threads}.t{t}.s{i}")),
                    ctx,
                )

            row = threaded_rate(
                threads,
                seconds,
                setup,
                op,
                lambda _: None,
                {"bench (this process)": os.getpid()},
                db,
            )
            row["path"] = "in-process record_payment (threads)"
            results.append(row)
    return results
