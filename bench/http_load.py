"""Load generation for the HTTP benchmarks: keep-alive clients in worker processes, the
event store's table lock sampled meanwhile, and the CPU of each process over the window."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import socket
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# ---- load generation (in worker processes) ----------------------------------------------------
from bench.http_env import (
    INTEGRATION_TOKEN,
    REPORTING_TOKEN,
    CpuSnapshot,
    Database,
    References,
    Server,
    latency_summary,
)


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
    token = INTEGRATION_TOKEN if spec.mode == "write" else REPORTING_TOKEN
    window_start = spec.start_at + spec.warmup
    window_end = window_start + spec.seconds
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    positions: list[int] = []
    cpu: dict[str, float] = {}
    refs = References(spec.accounts)
    url = urllib.parse.urlsplit(spec.base)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    head = f"Host: {url.netloc}\r\nAuthorization: Bearer {token}\r\n"

    def request(rng: random.Random, k: int, seq: int) -> bytes:
        if spec.mode == "write":
            body = json.dumps(
                refs.payment(rng, seq, f"hw.{spec.tag}.n{spec.clients}.w{spec.worker}.c{k}.s{seq}"),
                separators=(",", ":"),
            ).encode()
            return (
                f"POST /payments HTTP/1.1\r\n{head}Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
        if spec.mode == "funds":
            return f"GET /balances/funds HTTP/1.1\r\n{head}\r\n".encode()
        fund, reference = rng.choice(spec.sample)
        path = f"/accounts/{fund}/{urllib.parse.quote(reference, safe='')}?limit=100"
        return f"GET {path} HTTP/1.1\r\n{head}\r\n".encode()

    async def one_client(k: int) -> None:
        # A bare HTTP/1.1 keep-alive client (asyncio streams): the load generator shares
        # the 2-core machine with the server, so it must cost little per request (httpx
        # took ~9 ms of CPU per POST here, more than the server's ~4-5 ms).
        rng = random.Random(spec.seed * 100_003 + spec.worker * 1009 + k)
        seq = 0
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while time.monotonic() < window_end:
            seq += 1
            started = time.monotonic()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                writer.write(request(rng, k, seq))
                status, header, keep = await asyncio.wait_for(_response(reader), 120)
                if not keep:
                    writer.close()
                    reader = writer = None
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as error:
                status, header = type(error).__name__, None
                if writer is not None:
                    writer.close()
                reader = writer = None
            finished = time.monotonic()
            if window_start <= started and finished <= window_end:
                latencies.append((finished - started) * 1000)
                statuses[status] += 1
                if header is not None:
                    positions.append(int(header))
        if writer is not None:
            writer.close()

    async def cpu_window() -> None:
        await asyncio.sleep(max(0.0, window_start - time.monotonic()))
        cpu["start"] = time.process_time()
        await asyncio.sleep(max(0.0, window_end - time.monotonic()))
        cpu["end"] = time.process_time()

    await asyncio.sleep(max(0.0, spec.start_at - time.monotonic()))
    await asyncio.gather(cpu_window(), *(one_client(k) for k in range(spec.clients)))
    return {
        "latencies": latencies,
        "statuses": dict(statuses),
        "positions": [min(positions), max(positions)] if positions else [],
        "cpu_seconds": cpu.get("end", 0.0) - cpu.get("start", 0.0),
    }


async def _response(reader: asyncio.StreamReader) -> tuple[str, str | None, bool]:
    """One response: its status, its ledger-position header (or None), and whether the
    connection stays open. The body is read (by Content-Length) and dropped."""
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)[1]
    length, position, keep = 0, None, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "ledger-position":
            position = value.strip()
        elif name == "connection" and value.strip().lower() == "close":
            keep = False
        elif name == "transfer-encoding":
            raise ValueError("chunked responses are not read by the bench client")
    if length:
        await reader.readexactly(length)
    return status, position, keep


class BareClient:
    """One keep-alive HTTP/1.1 connection, blocking, for requests one at a time: the same
    bare protocol as the load workers' (`_response`), so that a sequential read measures the
    server, not a client library (httpx's sync client cost several ms of CPU per request
    on this 2-core machine, shared with the server)."""

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        url = urllib.parse.urlsplit(base)
        self.address = (url.hostname or "127.0.0.1", url.port or 80)
        self.head = f"Host: {url.netloc}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        self.sock: socket.socket | None = None
        self.stream: Any = None

    def get(self, target: str) -> tuple[int, bytes]:
        """GET a path (with its query): the status and the body."""
        for attempt in (1, 2):  # once more on a connection the server closed while idle
            if self.sock is None:
                self.sock = socket.create_connection(self.address, timeout=120)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.stream = self.sock.makefile("rb")
            try:
                self.sock.sendall(f"GET {target} HTTP/1.1\r\n{self.head}\r\n".encode())
                return self._response()
            except (ConnectionError, ValueError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _response(self) -> tuple[int, bytes]:
        status_line = self.stream.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        length, keep = 0, True
        while (line := self.stream.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                keep = False
            elif name == "transfer-encoding":
                raise ValueError("chunked responses are not read by the bench client")
        body = self.stream.read(length) if length else b""
        if not keep:
            self.close()
        return status, body

    def close(self) -> None:
        if self.sock is not None:
            self.stream.close()
            self.sock.close()
        self.sock = self.stream = None


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
    start_at = time.monotonic() + 4.0  # time for the spawned workers to start
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
