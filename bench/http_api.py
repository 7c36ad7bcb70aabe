"""Benchmark: the HTTP API on PostgreSQL with at least 1,000,000 events stored (issue #4).

This is a measurement, not a test: it asserts nothing about speed. In one run it:

1. fills a scratch PostgreSQL database (--pg-db, default income_ledger_bench_http; dropped
   and created again, or with --reuse kept and topped up) to at least --events events
   through `IncomeLedger.record_payments` in batches of 1000 receipts (about 10% with
   references that match no fund: 1 event; the rest allocated automatically: 2 events),
   spread over --accounts payer accounts in five funds and over the last year. Then
   `VACUUM ANALYZE` and `income-ledger project --once --page-size 5000` (the read model's
   catch-up), each timed;
2. starts a real server, `income-ledger serve` (uvicorn, one worker), with
   LEDGER_RUN_PROJECTIONS=false, and `income-ledger project` following beside it, as they
   run in production on PostgreSQL;
3. reads, one request at a time (after a warm-up): GET /balances/funds and
   GET /accounts/{fund}/{reference}?limit=100 for random existing accounts, over HTTP; the
   same through the FastAPI app in this process (httpx.ASGITransport: no socket, no
   uvicorn); the route functions called directly (no FastAPI); and the endpoints' SQL
   through bare psycopg2. Then the same two reads from --read-clients concurrent clients;
4. writes: one client for --single-seconds; then, for each of --clients, that many
   concurrent clients POST /payments with unique external ids for --seconds (after
   --warmup seconds not counted): payments/s, events/s (from the positions returned),
   latency median/p99/max, errors by status, and how far the projection fell behind.
   Meanwhile pg_stat_activity and pg_locks are sampled every 50 ms: how often the event
   store's table lock is held, whether its holder is running SQL or idle in its transaction
   (waiting for the Python process that owns it), and how many wait for it;
5. with the server stopped, baselines: in-process `IncomeLedger.record_payment` from
   --baseline-in-process-threads threads (the app without HTTP), bare psycopg2 INSERT +
   COMMIT of one event-sized row, and the event store's write pattern in bare SQL (LOCK
   TABLE ... IN EXCLUSIVE MODE, INSERT 2 rows, NOTIFY, COMMIT), at each of --clients.

CPU use (in cores) of the server, the projector, PostgreSQL and the load generator is read
from /proc over every timed window: on a 2-core machine it tells which of them limits a figure.
The load generator runs asyncio + httpx in --client-procs processes (default 1).

    .venv/bin/python -m bench.http_api [--events 1000000] [--clients 16,32,64] [--seconds 20]
        [--reuse] [--drop] [--fill-only] [--client-procs 1] [--read-requests 500]
        [--json results.json]

PostgreSQL: the scratch database is dropped and created through an AUTOCOMMIT connection to
--pg-admin-url. It is kept at the end (so that --reuse saves the fill next time) unless
--drop is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_PG_DB = "income_ledger_bench_http"
FILL_BATCH = 1000
CHANNELS = ("govuk_pay", "card", "allpay", "paypoint", "bank_transfer", "cash", "telephone")
INVALID_SHARE = 0.10
HISTORY_DAYS = 365
EVENTS_PER_RECEIPT = 1.9
INTEGRATION_TOKEN = "bench-integration-token-0123456789"
REPORTING_TOKEN = "bench-reporting-token-0123456789ab"
API_KEYS = f"bench-int:integration:{INTEGRATION_TOKEN},bench-rep:reporting:{REPORTING_TOKEN}"
RAW_TABLE = "bench_raw_events"
META_TABLE = "bench_http_meta"
CLK_TCK = os.sysconf("SC_CLK_TCK")
BIN = Path(sys.executable).parent

console = Console(width=None if sys.stdout.isatty() else 170)


# ---- the receipts ---------------------------------------------------------------------------


def reference_makers() -> list[tuple[str, Callable[[int], str]]]:
    from domain.sample_chart import (
        BUSINESS_RATES,
        COUNCIL_TAX,
        HOUSING_RENTS,
        PARKING_PCN,
        SUNDRY_DEBTORS,
    )

    return [
        ("CT", lambda i: COUNCIL_TAX.reference_rule.with_check_digit(f"{i:07d}")),
        ("NNDR", lambda i: BUSINESS_RATES.reference_rule.with_check_digit(f"{i:08d}")),
        ("HRA", lambda i: HOUSING_RENTS.reference_rule.with_check_digit(f"{i:06d}")),
        ("PCN", lambda i: PARKING_PCN.reference_rule.with_check_digit(f"PC{i:07d}")),
        ("SUN", lambda i: SUNDRY_DEBTORS.reference_rule.with_check_digit(f"INV{i:06d}")),
    ]


def invalid_reference(rng: random.Random, i: int) -> str:
    from domain.sample_chart import COUNCIL_TAX

    kind = rng.randrange(3)
    if kind == 0:
        return "JUNK"
    if kind == 1:
        return f"UNKNOWN {i % 100000}"
    valid = COUNCIL_TAX.reference_rule.with_check_digit(f"{rng.randrange(10**7):07d}")
    return valid[:-1] + str((int(valid[-1]) + 1) % 10)


class References:
    """References drawn from a fixed pool of payer accounts (accounts // 5 per fund)."""

    def __init__(self, accounts: int) -> None:
        self.makers = reference_makers()
        self.per_fund = max(1, accounts // len(self.makers))
        # Account bodies are spread over the number space, so references look unrelated.
        self.stride = 7919

    def draw(self, rng: random.Random, i: int) -> str:
        if rng.random() < INVALID_SHARE:
            return invalid_reference(rng, i)
        _, make = rng.choice(self.makers)
        return make((rng.randrange(self.per_fund) * self.stride + 1000) % 10**6)


def fill_commands(
    rng: random.Random, refs: References, n: int, tag: str, now: datetime
) -> list[Any]:
    from application.ledger import RecordPayment

    return [
        RecordPayment(
            channel=CHANNELS[i % len(CHANNELS)],
            amount_pence=rng.randrange(100, 250_000),
            reference=refs.draw(rng, i),
            received_at=now - timedelta(seconds=rng.randrange(HISTORY_DAYS * 86400)),
            # Dots keep digit runs apart: 13+ digits would look like a card number.
            external_id=f"hb.{tag}.{i}",
        )
        for i in range(n)
    ]


# ---- CPU accounting from /proc ----------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def postgres_cpu(database: str) -> tuple[dict[int, float], dict[int, float]]:
    """CPU seconds of PostgreSQL backends of `database`, and of all PostgreSQL processes."""
    ours: dict[int, float] = {}
    every: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        seconds = process_cpu(int(entry.name))
        every[int(entry.name)] = seconds
        if f" {database} " in cmdline:
            ours[int(entry.name)] = seconds
    return ours, every


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


@dataclass
class CpuSnapshot:
    at: float
    pids: dict[str, float]
    pg_ours: dict[int, float]
    pg_all: dict[int, float]
    machine: tuple[float, float]

    @classmethod
    def take(cls, pids: dict[str, int], database: str) -> CpuSnapshot:
        ours, every = postgres_cpu(database)
        return cls(
            time.monotonic(),
            {name: process_cpu(pid) for name, pid in pids.items()},
            ours,
            every,
            machine_cpu(),
        )

    def cores_since(self, before: CpuSnapshot) -> dict[str, float]:
        """Cores used by each tracked process, PostgreSQL and the whole machine in between."""
        seconds = max(self.at - before.at, 1e-9)
        out = {name: (v - before.pids.get(name, 0.0)) / seconds for name, v in self.pids.items()}
        out["postgres (this db)"] = (
            sum(v - before.pg_ours.get(pid, 0.0) for pid, v in self.pg_ours.items()) / seconds
        )
        out["postgres (all)"] = (
            sum(v - before.pg_all.get(pid, 0.0) for pid, v in self.pg_all.items()) / seconds
        )
        out["machine"] = (self.machine[0] - before.machine[0]) / seconds
        return out


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# ---- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median_ms": statistics.median(values) if values else math.nan,
        "p99_ms": percentile(values, 99),
        "max_ms": max(values) if values else math.nan,
    }


# ---- the scratch database ---------------------------------------------------------------------


class Database:
    def __init__(self, admin_url: str, name: str) -> None:
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.name = name
        self.url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        self.dsn = (
            make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
        )

    def admin_sql(self, sql: str) -> list[Any]:
        with self.admin.connect() as connection:
            result = connection.execute(text(sql))
            return list(result) if result.returns_rows else []

    def exists(self) -> bool:
        return bool(self.admin_sql(f"SELECT 1 FROM pg_database WHERE datname = '{self.name}'"))

    def recreate(self) -> None:
        self.admin_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.admin_sql(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        self.admin_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def connect(self, autocommit: bool = False) -> Any:
        connection = psycopg2.connect(self.dsn)
        connection.autocommit = autocommit
        return connection

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        connection = self.connect(autocommit=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                row = cursor.fetchone()
                return row[0] if row else None
        finally:
            connection.close()

    def execute(self, sql: str) -> None:
        connection = self.connect(autocommit=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
        finally:
            connection.close()

    def has_table(self, name: str) -> bool:
        return bool(self.scalar("SELECT to_regclass(%s) IS NOT NULL", (name,)))

    def max_position(self) -> int:
        if not self.has_table("ledger_events"):
            return 0
        return int(self.scalar("SELECT coalesce(max(id), 0) FROM ledger_events"))

    def read_model_position(self) -> int:
        if not self.has_table("projection_tracking"):
            return 0
        from projections.schema import PROJECTION_NAME

        value = self.scalar(
            "SELECT position FROM projection_tracking WHERE projection_name = %s",
            (PROJECTION_NAME,),
        )
        return int(value or 0)

    def size(self) -> str:
        return str(self.scalar("SELECT pg_size_pretty(pg_database_size(current_database()))"))

    def meta(self) -> dict[str, Any]:
        if not self.has_table(META_TABLE):
            return {}
        connection = self.connect(autocommit=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT key, value FROM {META_TABLE}")
                return {key: json.loads(value) for key, value in cursor.fetchall()}
        finally:
            connection.close()

    def set_meta(self, **values: Any) -> None:
        connection = self.connect(autocommit=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT)"
                )
                for key, value in values.items():
                    cursor.execute(
                        f"INSERT INTO {META_TABLE} VALUES (%s, %s) ON CONFLICT (key) "
                        "DO UPDATE SET value = excluded.value",
                        (key, json.dumps(value)),
                    )
        finally:
            connection.close()

    def settings(self) -> str:
        names = (
            "server_version",
            "shared_buffers",
            "synchronous_commit",
            "fsync",
            "max_connections",
        )
        return ", ".join(f"{n}={self.admin_sql(f'SHOW {n}')[0][0]}" for n in names)

    def connections_in_use(self) -> int:
        return int(self.admin_sql("SELECT count(*) FROM pg_stat_activity")[0][0])

    def max_connections(self) -> int:
        return int(self.admin_sql("SHOW max_connections")[0][0])


def cli_env(url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "LEDGER_DATABASE_URL": url,
            "LEDGER_ACTOR": "bench",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def run_cli(url: str, *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "income-ledger"), *args],
        env=cli_env(url),
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"income-ledger {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}"
        )
    return seconds, done.stdout.strip()


# ---- 1. fill ----------------------------------------------------------------------------------


def fill_worker(url: str, worker: int, batches: int, accounts: int, seed: int) -> int:
    """Record `batches` batches of FILL_BATCH receipts; returns the receipts recorded."""
    from application.ledger import CommandContext
    from income_ledger.bootstrap import build_ledger
    from income_ledger.settings import Settings

    rng = random.Random(seed * 7919 + worker)
    refs = References(accounts)
    now = datetime.now(UTC)
    recorded = 0
    run_tag = "".join(random.SystemRandom().choice("abcdefghjkmnpqrstuvwxyz") for _ in range(6))
    with build_ledger(Settings(database_url=url)) as ledger:
        for batch in range(batches):
            commands = fill_commands(rng, refs, FILL_BATCH, f"{run_tag}.w{worker}.b{batch}", now)
            outcomes = ledger.record_payments(commands, CommandContext("bench:fill"))
            recorded += sum(o.recorded for o in outcomes)
    return recorded


def fill(db: Database, args: argparse.Namespace) -> dict[str, Any]:
    """Fill (or top up) to at least args.events events; catch the read model up; time both."""
    result: dict[str, Any] = {}
    reused = args.reuse and db.exists() and db.has_table("ledger_events")
    if not reused:
        db.recreate()
        db.set_meta(accounts=args.accounts)
    elif db.meta().get("accounts") not in (None, args.accounts):
        console.print(
            f"[yellow]note[/]: reusing a database filled with --accounts "
            f"{db.meta()['accounts']}, not {args.accounts}"
        )
    run_cli(db.url, "db", "init")
    run_cli(db.url, "funds", "add", "--sample")
    start_position = db.max_position()
    missing = args.events - start_position
    result["reused"] = bool(reused)
    result["events_before"] = start_position
    if missing > 0:
        batches = math.ceil(missing / (FILL_BATCH * EVENTS_PER_RECEIPT)) + 2
        procs = max(1, min(args.fill_procs, batches))
        share = [batches // procs + (1 if w < batches % procs else 0) for w in range(procs)]
        console.print(
            f"filling {missing:,}+ events: {batches} batches of {FILL_BATCH} receipts in "
            f"{procs} process(es) ({uptime()})"
        )
        started = time.perf_counter()
        context = multiprocessing.get_context("spawn")
        with context.Pool(procs) as pool:
            pending = pool.starmap_async(
                fill_worker,
                [
                    (db.url, w, share[w], args.accounts, args.seed + start_position)
                    for w in range(procs)
                ],
            )
            while not pending.ready():
                pending.wait(30)
                if not pending.ready():
                    done = db.max_position() - start_position
                    elapsed = time.perf_counter() - started
                    console.print(
                        f"  {done:,} events in {elapsed:,.0f}s ({done / elapsed:,.0f}/s)",
                        highlight=False,
                    )
            receipts = sum(pending.get())
        seconds = time.perf_counter() - started
        while db.max_position() < args.events:  # rare: fewer 2-event receipts than expected
            fill_worker(db.url, 99, 1, args.accounts, args.seed + db.max_position())
        seconds = time.perf_counter() - started
        added = db.max_position() - start_position
        result.update(
            fill_seconds=seconds,
            fill_receipts=receipts,
            fill_events=added,
            fill_events_per_s=added / seconds,
            fill_procs=procs,
        )
        console.print(
            f"filled {added:,} events ({receipts:,}+ receipts) in {seconds:,.0f}s: "
            f"{added / seconds:,.0f} events/s",
            highlight=False,
        )
        vacuum_started = time.perf_counter()
        db.execute("VACUUM ANALYZE")
        result["vacuum_events_seconds"] = time.perf_counter() - vacuum_started
        db.set_meta(**{k: v for k, v in result.items() if k.startswith("fill_")})
    lag = db.max_position() - db.read_model_position()
    console.print(f"catching up the read model: {lag:,} events behind ({uptime()})")
    seconds, output = run_cli(db.url, "project", "--once", "--page-size", "5000")
    result["catch_up_events"] = lag
    result["catch_up_seconds"] = seconds
    console.print(f"  {output} in {seconds:,.0f}s", highlight=False)
    if lag > 50_000:
        result["catch_up_events_per_s"] = lag / seconds
        vacuum_started = time.perf_counter()
        db.execute("VACUUM ANALYZE")
        result["vacuum_read_model_seconds"] = time.perf_counter() - vacuum_started
        db.set_meta(
            catch_up_events=lag,
            catch_up_seconds=seconds,
            catch_up_events_per_s=lag / seconds,
        )
    result["earlier"] = db.meta()
    result["events"] = db.max_position()
    result["receipts"] = int(db.scalar("SELECT count(*) FROM payments"))
    result["accounts_in_read_model"] = int(
        db.scalar("SELECT count(*) FROM account_balances WHERE account LIKE 'income:%'")
    )
    result["postings_rows"] = int(db.scalar("SELECT count(*) FROM postings"))
    result["database_size"] = db.size()
    return result


def sample_accounts(db: Database, n: int, seed: int) -> list[tuple[str, str]]:
    """Random existing payer accounts (fund, reference) from the read model."""
    connection = db.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT setseed(%s)", (((seed % 1000) / 1000.0),))
            cursor.execute(
                "SELECT fund_code, reference FROM account_balances "
                "WHERE account LIKE 'income:%%' ORDER BY random() LIMIT %s",
                (n,),
            )
            return [(row[0], row[1]) for row in cursor.fetchall()]
    finally:
        connection.rollback()
        connection.close()


# ---- 2. the server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """`income-ledger serve` and `income-ledger project` as subprocesses."""

    def __init__(self, url: str, logs: Path) -> None:
        self.url = url
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.logs = logs
        self.serve: subprocess.Popen[bytes] | None = None
        self.project: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = cli_env(self.url, LEDGER_API_KEYS=API_KEYS, LEDGER_RUN_PROJECTIONS="false")
        self.project = subprocess.Popen(
            [str(BIN / "income-ledger"), "project"],
            env=env,
            stdout=open(self.logs / "project.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        self.serve = subprocess.Popen(
            [str(BIN / "income-ledger"), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=open(self.logs / "serve.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        import httpx

        deadline = time.monotonic() + 60
        while True:
            if self.serve.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log_tail('serve.log')}")
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the server did not answer /health: {self.log_tail('serve.log')}"
                )
            time.sleep(0.2)

    def pids(self) -> dict[str, int]:
        assert self.serve is not None and self.project is not None
        return {"server": self.serve.pid, "projector": self.project.pid}

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            return "\n".join((self.logs / name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def alive(self) -> bool:
        return all(p is not None and p.poll() is None for p in (self.serve, self.project))

    def stop(self) -> None:
        for process, sig in ((self.serve, signal.SIGINT), (self.project, signal.SIGTERM)):
            if process is not None and process.poll() is None:
                process.send_signal(sig)
        for process in (self.serve, self.project):
            if process is None:
                continue
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# ---- load generation (in worker processes) ----------------------------------------------------


@dataclass
class LoadSpec:
    mode: str  # write | funds | accounts
    base: str
    clients: int
    start_at: float  # time.monotonic(): system-wide on Linux, so shared by processes
    warmup: float
    seconds: float
    worker: int
    seed: int
    accounts: int = 50_000
    sample: list[tuple[str, str]] = field(default_factory=list)
    tag: str = ""


def load_worker(spec: LoadSpec) -> dict[str, Any]:
    return asyncio.run(_load(spec))


async def _load(spec: LoadSpec) -> dict[str, Any]:
    import httpx

    token = INTEGRATION_TOKEN if spec.mode == "write" else REPORTING_TOKEN
    window_start = spec.start_at + spec.warmup
    window_end = window_start + spec.seconds
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    positions: list[int] = []
    cpu: dict[str, float] = {}
    refs = References(spec.accounts)

    async def one_client(client: httpx.AsyncClient, k: int) -> None:
        rng = random.Random(spec.seed * 100_003 + spec.worker * 1009 + k)
        seq = 0
        while True:
            if time.monotonic() >= window_end:
                return
            seq += 1
            started = time.monotonic()
            try:
                if spec.mode == "write":
                    response = await client.post(
                        "/payments",
                        json={
                            "channel": CHANNELS[seq % len(CHANNELS)],
                            "amount_pence": rng.randrange(100, 250_000),
                            "reference": refs.draw(rng, seq),
                            "external_id": f"hw.{spec.tag}.n{spec.clients}.w{spec.worker}.c{k}.s{seq}",
                        },
                    )
                elif spec.mode == "funds":
                    response = await client.get("/balances/funds")
                else:
                    fund, reference = rng.choice(spec.sample)
                    response = await client.get(
                        f"/accounts/{fund}/{urllib.parse.quote(reference, safe='')}",
                        params={"limit": 100},
                    )
                status = str(response.status_code)
                header = response.headers.get("ledger-position")
            except httpx.HTTPError as error:
                status, header = type(error).__name__, None
            finished = time.monotonic()
            if window_start <= started and finished <= window_end:
                latencies.append((finished - started) * 1000)
                statuses[status] += 1
                if header is not None:
                    positions.append(int(header))

    async def cpu_window() -> None:
        await asyncio.sleep(max(0.0, window_start - time.monotonic()))
        cpu["start"] = time.process_time()
        await asyncio.sleep(max(0.0, window_end - time.monotonic()))
        cpu["end"] = time.process_time()

    limits = httpx.Limits(max_connections=spec.clients, max_keepalive_connections=spec.clients)
    async with httpx.AsyncClient(
        base_url=spec.base,
        headers={"Authorization": f"Bearer {token}"},
        limits=limits,
        timeout=httpx.Timeout(120.0),
    ) as client:
        await asyncio.sleep(max(0.0, spec.start_at - time.monotonic()))
        await asyncio.gather(cpu_window(), *(one_client(client, k) for k in range(spec.clients)))
    return {
        "latencies": latencies,
        "statuses": dict(statuses),
        "positions": [min(positions), max(positions)] if positions else [],
        "cpu_seconds": cpu.get("end", 0.0) - cpu.get("start", 0.0),
    }


LOCK_SAMPLE_SQL = """
SELECT a.state, a.wait_event_type, l.pid IS NOT NULL AS holds_lock
FROM pg_stat_activity a
LEFT JOIN pg_locks l
  ON l.pid = a.pid AND l.granted AND l.locktype = 'relation' AND l.mode = 'ExclusiveLock'
 AND l.relation = %s::regclass
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
  AND a.backend_type = 'client backend'
"""


class LockSampler:
    """Samples pg_stat_activity and pg_locks every 50 ms: who waits, and what the holder of
    the event store's table lock is doing (running SQL, or idle in its transaction while
    the Python process that owns it works or waits for the GIL)."""

    def __init__(self, db: Database, relation: str = "ledger_events") -> None:
        self.db = db
        self.relation = relation
        self.stop_event = threading.Event()
        self.samples: list[list[tuple[str, str | None, bool]]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        connection = self.db.connect(autocommit=True)
        try:
            with connection.cursor() as cursor:
                while not self.stop_event.wait(0.05):
                    cursor.execute(LOCK_SAMPLE_SQL, (self.relation,))
                    self.samples.append(cursor.fetchall())
        finally:
            connection.close()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> dict[str, float]:
        self.stop_event.set()
        self.thread.join()
        n = max(1, len(self.samples))
        held = [row for sample in self.samples for row in sample if row[2]]
        return {
            "samples": len(self.samples),
            "lock_held_share": sum(any(r[2] for r in sample) for sample in self.samples) / n,
            "holder_active_share": sum(1 for r in held if r[0] == "active") / n,
            "holder_idle_in_tx_share": sum(1 for r in held if r[0] == "idle in transaction") / n,
            "mean_waiting_on_lock": sum(
                1 for sample in self.samples for r in sample if r[1] == "Lock"
            )
            / n,
            "mean_active": sum(1 for sample in self.samples for r in sample if r[0] == "active")
            / n,
            "mean_connections": sum(len(sample) for sample in self.samples) / n,
        }


@dataclass
class LoadResult:
    mode: str
    clients: int
    seconds: float
    ok: int
    statuses: dict[str, int]
    per_second: float
    latency: dict[str, float]
    cores: dict[str, float]
    positions: list[int]
    events: int = 0
    lag_at_end: int = 0
    catch_up_after_s: float = 0.0
    locks: dict[str, float] = field(default_factory=dict)


def run_load(
    mode: str,
    clients: int,
    server: Server,
    db: Database,
    args: argparse.Namespace,
    sample: list[tuple[str, str]] | None = None,
    tag: str = "",
    seconds: float | None = None,
) -> LoadResult:
    seconds = seconds if seconds is not None else args.seconds
    procs = max(1, min(args.client_procs, clients))
    share = [clients // procs + (1 if w < clients % procs else 0) for w in range(procs)]
    start_at = time.monotonic() + 4.0  # time for the spawned workers to import httpx
    specs = [
        LoadSpec(
            mode=mode,
            base=server.base,
            clients=share[w],
            start_at=start_at,
            warmup=args.warmup,
            seconds=seconds,
            worker=w,
            seed=args.seed + clients,
            accounts=args.accounts,
            sample=sample or [],
            tag=tag,
        )
        for w in range(procs)
    ]
    context = multiprocessing.get_context("spawn")
    with context.Pool(procs) as pool:
        pending = pool.map_async(load_worker, specs)
        pids = server.pids() | {f"client{w}": p.pid for w, p in enumerate(pool._pool)}  # type: ignore[attr-defined]
        sampler = LockSampler(db)
        time.sleep(max(0.0, start_at + args.warmup - time.monotonic()))
        before = CpuSnapshot.take(pids, db.name)
        sampler.start()
        time.sleep(max(0.0, start_at + args.warmup + seconds - time.monotonic()))
        after = CpuSnapshot.take(pids, db.name)
        locks = sampler.stop()
        end_position = db.max_position()
        lag_at_end = end_position - db.read_model_position() if mode == "write" else 0
        parts = pending.get()
    cores = after.cores_since(before)
    clients_cores = sum(p["cpu_seconds"] for p in parts) / seconds
    cores = {k: v for k, v in cores.items() if not k.startswith("client")}
    cores["load generator"] = clients_cores
    cores["others"] = cores["machine"] - sum(
        cores[k] for k in ("server", "projector", "postgres (this db)", "load generator")
    )
    latencies = [x for p in parts for x in p["latencies"]]
    statuses: Counter[str] = Counter()
    for part in parts:
        statuses.update(part["statuses"])
    positions = [x for p in parts for x in p["positions"]]
    ok_status = "201" if mode == "write" else "200"
    result = LoadResult(
        mode=mode,
        clients=clients,
        seconds=seconds,
        ok=statuses.get(ok_status, 0),
        statuses=dict(statuses),
        per_second=statuses.get(ok_status, 0) / seconds,
        latency=latency_summary(latencies),
        cores=cores,
        positions=[min(positions), max(positions)] if positions else [],
        lag_at_end=lag_at_end,
        locks=locks,
    )
    if mode == "write" and positions:
        result.events = max(positions) - min(positions)
        started = time.monotonic()
        target = db.max_position()
        while db.read_model_position() < target and time.monotonic() - started < 180:
            time.sleep(0.2)
        result.catch_up_after_s = time.monotonic() - started
    if not server.alive():
        raise RuntimeError(
            f"a server process died: {server.log_tail('serve.log')}\n"
            f"{server.log_tail('project.log')}"
        )
    return result


# ---- 3. reads, one at a time --------------------------------------------------------------------


def sequential_reads(
    base: str, sample: list[tuple[str, str]], n: int, warmup: int, seed: int, server_pid: int
) -> dict[str, dict[str, float]]:
    import httpx

    rng = random.Random(seed)
    out: dict[str, dict[str, float]] = {}
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {REPORTING_TOKEN}"}, timeout=60
    ) as client:

        def funds() -> int:
            return client.get("/balances/funds").status_code

        def account() -> int:
            fund, reference = rng.choice(sample)
            return client.get(
                f"/accounts/{fund}/{urllib.parse.quote(reference, safe='')}",
                params={"limit": 100},
            ).status_code

        for name, call in (("GET /balances/funds", funds), ("GET /accounts/{fund}/{ref}", account)):
            out[name] = time_calls(call, n, warmup, expect=200, cpu_pid=server_pid)
    return out


def time_calls(
    call: Callable[[], Any], n: int, warmup: int, expect: Any = None, cpu_pid: int | None = None
) -> dict[str, float]:
    """Latency of n sequential calls, and CPU ms per call of this process (or of cpu_pid)."""
    for _ in range(warmup):
        call()
    latencies = []
    bad = 0
    cpu_before = process_cpu(cpu_pid) if cpu_pid else time.process_time()
    for _ in range(n):
        started = time.perf_counter()
        result = call()
        latencies.append((time.perf_counter() - started) * 1000)
        if expect is not None and result != expect:
            bad += 1
    cpu_after = process_cpu(cpu_pid) if cpu_pid else time.process_time()
    return latency_summary(latencies) | {
        "errors": bad,
        "cpu_ms": (cpu_after - cpu_before) / n * 1000,
    }


def in_process_reads(
    db: Database, sample: list[tuple[str, str]], n: int, warmup: int, seed: int
) -> dict[str, dict[str, float]]:
    """The route functions called directly: the app's own work for each query, no HTTP."""
    from api import routes_queries
    from api.auth import ApiKeys, ApiUser, Role
    from income_ledger.bootstrap import build_ledger
    from income_ledger.server import build_services
    from income_ledger.settings import Settings

    settings = Settings(database_url=db.url)
    rng = random.Random(seed)
    user = ApiUser("bench-rep", Role.REPORTING)
    out: dict[str, dict[str, float]] = {}
    with build_ledger(settings) as ledger:
        svc = build_services(settings, ledger, ApiKeys.parse(API_KEYS))
        try:

            def account() -> Any:
                fund, reference = rng.choice(sample)
                return routes_queries.account(fund, reference, svc, user, limit=100, offset=0)

            out["fund chart (ledger.funds())"] = time_calls(ledger.funds, n, warmup)
            out["GET /balances/funds"] = time_calls(
                lambda: routes_queries.fund_balances(svc, user), n, warmup
            )
            out["GET /accounts/{fund}/{ref}"] = time_calls(account, n, warmup)
        finally:
            svc.read_engine.dispose()
    return out


def asgi_measurements(
    db: Database, sample: list[tuple[str, str]], args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """The whole FastAPI app in this process through httpx.ASGITransport (routing, middleware,
    auth, validation, serialisation; no socket, no uvicorn), one request at a time."""
    import httpx

    from api.auth import ApiKeys
    from income_ledger.server import running_app
    from income_ledger.settings import Settings

    settings = Settings(database_url=db.url, run_projections=False)
    rng = random.Random(args.seed)
    refs = References(args.accounts)
    tag = "".join(random.SystemRandom().choice("abcdefghjkmnpqrstuvwxyz") for _ in range(6))
    reader = {"Authorization": f"Bearer {REPORTING_TOKEN}"}
    writer = {"Authorization": f"Bearer {INTEGRATION_TOKEN}"}
    out: dict[str, dict[str, float]] = {}
    counter = iter(range(10**9))

    async def measure(app: Any) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

            async def funds() -> int:
                return (await client.get("/balances/funds", headers=reader)).status_code

            async def account() -> int:
                fund, reference = rng.choice(sample)
                response = await client.get(
                    f"/accounts/{fund}/{urllib.parse.quote(reference, safe='')}",
                    params={"limit": 100},
                    headers=reader,
                )
                return response.status_code

            async def payment() -> int:
                i = next(counter)
                response = await client.post(
                    "/payments",
                    json={
                        "channel": CHANNELS[i % len(CHANNELS)],
                        "amount_pence": rng.randrange(100, 250_000),
                        "reference": refs.draw(rng, i),
                        "external_id": f"ha.{tag}.s{i}",
                    },
                    headers=writer,
                )
                return response.status_code

            for name, call, expect, n in (
                ("GET /balances/funds", funds, 200, args.read_requests),
                ("GET /accounts/{fund}/{ref}", account, 200, args.read_requests),
                ("POST /payments", payment, 201, args.single_requests),
            ):
                for _ in range(args.read_warmup):
                    await call()
                latencies = []
                bad = 0
                cpu_before = time.process_time()
                for _ in range(n):
                    started = time.perf_counter()
                    status = await call()
                    latencies.append((time.perf_counter() - started) * 1000)
                    bad += status != expect
                cpu = (time.process_time() - cpu_before) / n * 1000
                out[name] = latency_summary(latencies) | {"errors": bad, "cpu_ms": cpu}

    with running_app(settings, ApiKeys.parse(API_KEYS)) as app:
        asyncio.run(measure(app))
    return out


RAW_POSITION_SQL = "SELECT position FROM projection_tracking WHERE projection_name = %s"
RAW_FUNDS_SQL = "SELECT * FROM fund_balances ORDER BY fund_code"
RAW_ACCOUNT_TOTALS_SQL = """
SELECT coalesce(sum(-amount_pence), 0),
       coalesce(sum(CASE WHEN account = 'vat:output' THEN -amount_pence ELSE 0 END), 0),
       count(DISTINCT position)
FROM postings WHERE fund_code = %s AND reference = %s
"""
RAW_ACCOUNT_PAGE_SQL = """
SELECT position, payment_id, action, min(effective_at), min(recorded_at), sum(-amount_pence),
       sum(CASE WHEN account = 'vat:output' THEN -amount_pence ELSE 0 END)
FROM postings WHERE fund_code = %s AND reference = %s
GROUP BY position, payment_id, action ORDER BY position LIMIT 100 OFFSET 0
"""


def raw_reads(
    db: Database, sample: list[tuple[str, str]], n: int, warmup: int, seed: int
) -> dict[str, dict[str, float]]:
    """The SQL the two endpoints send, through bare psycopg2, one read transaction each."""
    from projections.schema import PROJECTION_NAME

    rng = random.Random(seed)
    connection = db.connect()
    cursor = connection.cursor()

    def funds() -> None:
        cursor.execute(RAW_POSITION_SQL, (PROJECTION_NAME,))
        cursor.fetchall()
        cursor.execute(RAW_FUNDS_SQL)
        cursor.fetchall()
        connection.rollback()

    def account() -> None:
        fund, reference = rng.choice(sample)
        cursor.execute(RAW_POSITION_SQL, (PROJECTION_NAME,))
        cursor.fetchall()
        cursor.execute(RAW_ACCOUNT_TOTALS_SQL, (fund, reference))
        cursor.fetchall()
        cursor.execute(RAW_ACCOUNT_PAGE_SQL, (fund, reference))
        cursor.fetchall()
        connection.rollback()

    try:
        return {
            "GET /balances/funds": time_calls(funds, n, warmup),
            "GET /accounts/{fund}/{ref}": time_calls(account, n, warmup),
        }
    finally:
        connection.close()


def statement_length(db: Database, sample: list[tuple[str, str]]) -> dict[str, float]:
    connection = db.connect()
    try:
        with connection.cursor() as cursor:
            lengths = []
            for fund, reference in sample[:300]:
                cursor.execute(
                    "SELECT count(DISTINCT position) FROM postings "
                    "WHERE fund_code = %s AND reference = %s",
                    (fund, reference),
                )
                lengths.append(cursor.fetchone()[0])
        return {
            "median": statistics.median(lengths),
            "max": max(lengths),
            "mean": statistics.mean(lengths),
        }
    finally:
        connection.rollback()
        connection.close()


# ---- 5. write baselines without HTTP ------------------------------------------------------------


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
                    RecordPayment(
                        channel=CHANNELS[i % len(CHANNELS)],
                        amount_pence=rng.randrange(100, 250_000),
                        reference=refs.draw(rng, i),
                        external_id=f"hp.{tag}.n{threads}.t{t}.s{i}",
                    ),
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


# ---- the report -------------------------------------------------------------------------------


def fmt_ms(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.1f}"


def fmt_cores(cores: dict[str, float], keys: Sequence[str]) -> str:
    short = {
        "server": "srv",
        "projector": "proj",
        "postgres (this db)": "pg",
        "postgres (all)": "pg all",
        "load generator": "client",
        "bench (this process)": "bench",
        "machine": "machine",
        "others": "others",
    }
    return " ".join(f"{short.get(k, k)} {cores[k]:.2f}" for k in keys if k in cores)


def print_report(results: dict[str, Any], args: argparse.Namespace) -> None:
    data = results["data"]
    console.print()
    console.print(
        f"[bold]Data[/]: {data['events']:,} events, {data['receipts']:,} receipts in the read "
        f"model, {data['accounts_in_read_model']:,} payer accounts, {data['postings_rows']:,} "
        f"postings rows; statement length over 300 sampled accounts: median "
        f"{results['statement_length']['median']:.0f}, mean {results['statement_length']['mean']:.1f}, "
        f"max {results['statement_length']['max']}; database {data['database_size']}",
        highlight=False,
    )
    earlier = data.get("earlier", {})
    if "fill_seconds" in data:
        console.print(
            f"fill: {data['fill_events']:,} events in {data['fill_seconds']:,.0f}s "
            f"({data['fill_events_per_s']:,.0f} events/s, {data['fill_procs']} processes)",
            highlight=False,
        )
    elif "fill_seconds" in earlier:
        console.print(
            f"fill (reused; when filled): {earlier['fill_events']:,} events in "
            f"{earlier['fill_seconds']:,.0f}s ({earlier['fill_events_per_s']:,.0f} events/s, "
            f"{earlier.get('fill_procs', '?')} processes)",
            highlight=False,
        )
    if "catch_up_events_per_s" in data:
        console.print(
            f"read-model catch-up: {data['catch_up_events']:,} events in "
            f"{data['catch_up_seconds']:,.0f}s ({data['catch_up_events_per_s']:,.0f} events/s)",
            highlight=False,
        )
    elif "catch_up_events_per_s" in earlier:
        console.print(
            f"read-model catch-up (when filled): {earlier['catch_up_events']:,} events in "
            f"{earlier['catch_up_seconds']:,.0f}s ({earlier['catch_up_events_per_s']:,.0f} "
            "events/s)",
            highlight=False,
        )

    writes = Table(
        "path",
        "clients",
        "payments/s",
        "events/s",
        "median ms",
        "p99 ms",
        "max ms",
        "errors",
        "CPU cores used",
        "proj. lag at end / caught up after",
        title=f"Writes: POST /payments for {args.seconds:g}s per row (after {args.warmup:g}s warm-up)",
    )
    for row in [results["write_single"], *results["writes"]]:
        errors = {k: v for k, v in row["statuses"].items() if k != "201"}
        writes.add_row(
            "HTTP POST /payments",
            str(row["clients"]),
            f"{row['per_second']:,.0f}",
            f"{row['events'] / row['seconds']:,.0f}",
            fmt_ms(row["latency"]["median_ms"]),
            fmt_ms(row["latency"]["p99_ms"]),
            fmt_ms(row["latency"]["max_ms"]),
            ", ".join(f"{k}: {v}" for k, v in errors.items()) or "0",
            fmt_cores(
                row["cores"],
                ("server", "projector", "postgres (this db)", "load generator", "others"),
            ),
            f"{row['lag_at_end']:,} ev / {row['catch_up_after_s']:.1f}s",
        )
    for row in results.get("write_baselines", []):
        writes.add_row(
            row["path"],
            str(row["threads"]),
            f"{row['per_second']:,.0f}",
            "",
            fmt_ms(row["latency"]["median_ms"]),
            fmt_ms(row["latency"]["p99_ms"]),
            fmt_ms(row["latency"]["max_ms"]),
            ", ".join(f"{k}: {v}" for k, v in row["errors"].items()) or "0",
            fmt_cores(row["cores"], ("bench (this process)", "postgres (this db)", "others")),
            "",
        )
    console.print(writes)

    locks = Table(
        "path",
        "clients",
        "lock held",
        "holder running SQL",
        "holder idle in transaction",
        "waiting on the lock (mean)",
        "active backends (mean)",
        "writer CPU ms per payment",
        title="The event store's table lock (pg_stat_activity + pg_locks sampled every 50 ms)",
    )
    for label, rows, key, process in (
        ("HTTP POST /payments", [results["write_single"], *results["writes"]], "clients", "server"),
        ("", results.get("write_baselines", []), "threads", "bench (this process)"),
    ):
        for row in rows:
            lock = row.get("locks") or {}
            if not lock:
                continue
            per_s = row["per_second"]
            cpu_ms = row["cores"].get(process, math.nan) / per_s * 1000 if per_s else math.nan
            locks.add_row(
                label or row["path"],
                str(row[key]),
                f"{lock['lock_held_share']:.0%}",
                f"{lock['holder_active_share']:.0%}",
                f"{lock['holder_idle_in_tx_share']:.0%}",
                f"{lock['mean_waiting_on_lock']:.1f}",
                f"{lock['mean_active']:.1f}",
                fmt_ms(cpu_ms) if "record_payment" in (label or row["path"]) or label else "",
            )
    console.print(locks)

    reads = Table(
        "query",
        "path",
        "median ms",
        "p99 ms",
        "max ms",
        "requests",
        "errors",
        "CPU ms per request",
        title=f"One request at a time ({args.read_requests} reads, {args.single_requests} ASGI "
        f"writes, each after {args.read_warmup} warm-up; HTTP writes: 1 client for "
        f"{args.single_seconds:g}s)",
    )
    for path, block in (
        ("bare SQL (psycopg2)", results["reads_raw"]),
        ("in-process route function", results["reads_in_process"]),
        ("FastAPI app via ASGI (no uvicorn)", results["asgi"]),
        ("HTTP, idle server", results["reads_http"]),
    ):
        for query, stats in block.items():
            reads.add_row(
                query,
                path,
                fmt_ms(stats["median_ms"]),
                fmt_ms(stats["p99_ms"]),
                fmt_ms(stats["max_ms"]),
                str(stats["n"]),
                str(stats.get("errors", 0)),
                fmt_ms(stats.get("cpu_ms", math.nan)),
            )
    for row in results.get("write_baselines", []):
        if row["path"].startswith("in-process") and row["threads"] == 1:
            reads.add_row(
                "POST /payments",
                "in-process record_payment",
                fmt_ms(row["latency"]["median_ms"]),
                fmt_ms(row["latency"]["p99_ms"]),
                fmt_ms(row["latency"]["max_ms"]),
                str(row["ops"]),
                str(sum(row["errors"].values())),
                fmt_ms(row["cores"]["bench (this process)"] / row["per_second"] * 1000),
            )
    single = results["write_single"]
    reads.add_row(
        "POST /payments",
        "HTTP, 1 client",
        fmt_ms(single["latency"]["median_ms"]),
        fmt_ms(single["latency"]["p99_ms"]),
        fmt_ms(single["latency"]["max_ms"]),
        str(single["latency"]["n"]),
        str(sum(v for k, v in single["statuses"].items() if k != "201")),
        fmt_ms(single["cores"]["server"] / single["per_second"] * 1000)
        if single["per_second"]
        else "-",
    )
    console.print(reads)

    concurrent = Table(
        "query",
        "clients",
        "requests/s",
        "median ms",
        "p99 ms",
        "max ms",
        "errors",
        "CPU cores used",
        title=f"Reads from concurrent clients ({args.read_seconds:g}s each)",
    )
    for row in results["reads_concurrent"]:
        errors = {k: v for k, v in row["statuses"].items() if k != "200"}
        concurrent.add_row(
            "GET /balances/funds" if row["mode"] == "funds" else "GET /accounts/{fund}/{ref}",
            str(row["clients"]),
            f"{row['per_second']:,.0f}",
            fmt_ms(row["latency"]["median_ms"]),
            fmt_ms(row["latency"]["p99_ms"]),
            fmt_ms(row["latency"]["max_ms"]),
            ", ".join(f"{k}: {v}" for k, v in errors.items()) or "0",
            fmt_cores(
                row["cores"],
                ("server", "projector", "postgres (this db)", "load generator", "others"),
            ),
        )
    console.print(concurrent)
    console.print(
        "CPU ms per request: of the process doing the work (this process for bare SQL, "
        "in-process and ASGI; the uvicorn server process for HTTP); PostgreSQL's own CPU is not "
        "included. CPU cores: srv = uvicorn server process, proj = `income-ledger project`, pg = "
        "PostgreSQL backends of this database, client = the load generator's processes, "
        "others = the rest of the 2-core VM's busy time (other people's tests and benchmarks).",
        highlight=False,
    )


# ---- main -------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http_api", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="at least this many events")
    parser.add_argument("--accounts", type=int, default=50_000, help="payer accounts (5 funds)")
    parser.add_argument("--clients", default="16,32,64", help="concurrent writers per run")
    parser.add_argument("--seconds", type=float, default=20, help="timed seconds per write run")
    parser.add_argument("--warmup", type=float, default=3, help="untimed seconds before each run")
    parser.add_argument("--client-procs", type=int, default=1, help="load generator processes")
    parser.add_argument("--read-requests", type=int, default=500)
    parser.add_argument("--read-warmup", type=int, default=50)
    parser.add_argument("--read-clients", type=int, default=16)
    parser.add_argument("--read-seconds", type=float, default=10)
    parser.add_argument("--baseline-seconds", type=float, default=8)
    parser.add_argument("--single-seconds", type=float, default=10, help="1-client HTTP writes")
    parser.add_argument("--single-requests", type=int, default=500, help="ASGI writes")
    parser.add_argument("--baseline-in-process-threads", default="1,4,16")
    parser.add_argument("--no-baselines", action="store_true", help="skip the write baselines")
    parser.add_argument("--fill-procs", type=int, default=2, help="processes filling in parallel")
    parser.add_argument("--reuse", action="store_true", help="keep an existing scratch database")
    parser.add_argument("--fill-only", action="store_true", help="fill (and catch up), then exit")
    parser.add_argument("--drop", action="store_true", help="drop the scratch database at the end")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument("--pg-db", default=DEFAULT_PG_DB, help="scratch database (dropped!)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    args.clients = [int(c) for c in str(args.clients).split(",") if c.strip()]
    args.baseline_in_process_threads = [
        int(c) for c in str(args.baseline_in_process_threads).split(",") if c.strip()
    ]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    db = Database(args.pg_admin_url, args.pg_db)
    results: dict[str, Any] = {
        "environment": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "postgres": db.settings(),
            "uptime_at_start": uptime(),
        }
    }
    console.print(
        f"[bold]HTTP API benchmark[/]: >= {args.events:,} events, writers {args.clients}, "
        f"{args.seconds:g}s per run; Python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"{results['environment']['postgres']}",
        highlight=False,
    )
    console.print(f"load before starting: {uptime()}", highlight=False)

    results["data"] = fill(db, args)
    if args.fill_only:
        console.print(
            f"--fill-only: stopping after the fill ({results['data']['events']:,} events)"
        )
        db.admin.dispose()
        return 0
    sample = sample_accounts(db, 2000, args.seed)
    results["statement_length"] = statement_length(db, sample)

    console.print(f"reads: bare SQL and in-process ({uptime()})")
    results["reads_raw"] = raw_reads(db, sample, args.read_requests, args.read_warmup, args.seed)
    results["reads_in_process"] = in_process_reads(
        db, sample, args.read_requests, args.read_warmup, args.seed
    )
    console.print(f"the FastAPI app in-process (ASGI, no uvicorn) ({uptime()})")
    results["asgi"] = asgi_measurements(db, sample, args)

    logs = Path(tempfile.mkdtemp(prefix="bench-http-"))
    server = Server(db.url, logs)
    tag = "".join(random.SystemRandom().choice("abcdefghjkmnpqrstuvwxyz") for _ in range(6))
    try:
        server.start()
        console.print(f"server on {server.base} (logs in {logs}); reads over HTTP ({uptime()})")
        results["reads_http"] = sequential_reads(
            server.base,
            sample,
            args.read_requests,
            args.read_warmup,
            args.seed,
            server.pids()["server"],
        )
        console.print(f"writes: 1 client ({uptime()})")
        results["write_single"] = asdict(
            run_load("write", 1, server, db, args, tag=tag, seconds=args.single_seconds)
        )
        results["reads_concurrent"] = []
        for mode in ("funds", "accounts"):
            row = run_load(
                mode, args.read_clients, server, db, args, sample=sample, seconds=args.read_seconds
            )
            results["reads_concurrent"].append(asdict(row))
            console.print(
                f"  {mode} x{args.read_clients}: {row.per_second:,.0f}/s, median "
                f"{fmt_ms(row.latency['median_ms'])} ms, p99 {fmt_ms(row.latency['p99_ms'])} ms "
                f"[{fmt_cores(row.cores, ('server', 'postgres (this db)', 'load generator', 'others'))}]",
                highlight=False,
            )
        results["writes"] = []
        for clients in args.clients:
            console.print(f"writes: {clients} clients ({uptime()})")
            row = run_load("write", clients, server, db, args, tag=tag)
            results["writes"].append(asdict(row))
            console.print(
                f"  {row.per_second:,.0f} payments/s, median {fmt_ms(row.latency['median_ms'])} "
                f"ms, p99 {fmt_ms(row.latency['p99_ms'])} ms, statuses {row.statuses}, lag at end "
                f"{row.lag_at_end:,}; lock held {row.locks['lock_held_share']:.0%} (holder idle in tx "
                f"{row.locks['holder_idle_in_tx_share']:.0%}), waiting on it "
                f"{row.locks['mean_waiting_on_lock']:.1f} [{fmt_cores(row.cores, ('server', 'projector', 'postgres (this db)', 'load generator', 'others'))}]",
                highlight=False,
            )
    finally:
        server.stop()
    if not args.no_baselines:
        console.print(f"baselines without HTTP ({uptime()})")
        results["write_baselines"] = in_process_write_baselines(
            db, args.baseline_in_process_threads, args.baseline_seconds, args.accounts, args.seed
        ) + raw_write_baselines(db, args.clients, args.baseline_seconds)
    results["environment"]["uptime_at_end"] = uptime()
    results["total_seconds"] = time.perf_counter() - started
    print_report(results, args)
    console.print(
        f"total {results['total_seconds']:,.0f}s; load at the end: {uptime()}", highlight=False
    )
    if args.drop:
        db.drop()
    db.admin.dispose()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
