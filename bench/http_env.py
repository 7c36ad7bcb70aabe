"""The HTTP benchmarks' setting: the scratch PostgreSQL database, the receipts they send,
the server under test as subprocesses, CPU accounting from /proc, and latency statistics."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
from rich.console import Console
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
# A busy 2-core machine took over a minute to start `serve --workers 2`.
SERVER_START_S = 300

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

    def payment(self, rng: random.Random, i: int, external_id: str) -> dict[str, Any]:
        """The i-th receipt's fields (as JSON for POST /payments, or RecordPayment(**...))."""
        return {
            "channel": CHANNELS[i % len(CHANNELS)],
            "amount_pence": rng.randrange(100, 250_000),
            "reference": self.draw(rng, i),
            "external_id": external_id,
        }


def fill_commands(
    rng: random.Random, refs: References, n: int, tag: str, now: datetime
) -> list[Any]:
    from application.ledger import RecordPayment

    return [
        RecordPayment(
            # Dots keep digit runs apart: 13+ digits would look like a card number.
            **refs.payment(rng, i, f"hb.{tag}.{i}"),
            received_at=now - timedelta(seconds=rng.randrange(HISTORY_DAYS * 86400)),
        )
        for i in range(n)
    ]


# ---- CPU accounting from /proc ----------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of one process and its live children (`serve --workers N`
    runs its workers as children); 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    own = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return own + sum(process_cpu(int(child)) for child in children)


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


# ---- 2. the server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """`income-ledger serve` and `income-ledger project` as subprocesses."""

    def __init__(
        self, url: str, logs: Path, workers: int = 1, env: dict[str, str] | None = None
    ) -> None:
        self.url = url
        self.workers = workers
        self.env = env or {}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.logs = logs
        self.serve: subprocess.Popen[bytes] | None = None
        self.project: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = cli_env(
            self.url, LEDGER_API_KEYS=API_KEYS, LEDGER_RUN_PROJECTIONS="false", **self.env
        )
        self.project = subprocess.Popen(
            [str(BIN / "income-ledger"), "project"],
            env=env,
            stdout=open(self.logs / "project.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        self.serve = subprocess.Popen(
            [
                *(str(BIN / "income-ledger"), "serve", "--host", "127.0.0.1"),
                *("--port", str(self.port), "--workers", str(self.workers)),
            ],
            env=env,
            stdout=open(self.logs / "serve.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        import httpx

        deadline = time.monotonic() + SERVER_START_S
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
