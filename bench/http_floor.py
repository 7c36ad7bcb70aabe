"""Benchmark: the floor under POST /payments on this machine (issue #9's ">= 1.0" goal).

The issue's goal for POST /payments is the rate of one psycopg2 connection doing a 1-row
INSERT + COMMIT. This measures, in the same run and with the same 32-client load generator
(bench/http_load.py) and the same uvicorn set-up as `serve --workers 2` (one listening
socket declared TCP, two worker processes), what bare Starlette apps reach when they do
less and less of the ledger's work (bench/floor_app.py):

  hello   parse the JSON body and answer 201: HTTP alone, no database
  group   + the row written by a group-commit writer thread (execute_values, one COMMIT)
  insert  + one INSERT + COMMIT per request on its own connection
  ledger  `income-ledger serve --workers 2` with `income-ledger project` following

and, after each, the raw baseline (one connection, 1-row INSERT + COMMIT, 5 s). If `hello`
already falls short of the baseline, no server in Python on this machine reaches the goal,
whatever the ledger does. A measurement, not a test: it asserts nothing.

    .venv/bin/python -m bench.http_floor [--modes hello,group,insert,ledger] [--repeats 3]
        [--seconds 10] [--clients 32] [--pg-db income_ledger_bench_floor] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.http_baselines import raw_write_baselines
from bench.http_env import (
    DEFAULT_PG_ADMIN_URL,
    SERVER_START_S,
    Database,
    Server,
    console,
    free_port,
    uptime,
)
from bench.http_load import run_load
from bench.write_path import prepare

MODES = ("hello", "group", "insert", "ledger")
# uvicorn as `serve --workers 2` runs it: Multiprocess over one socket declared TCP.
LAUNCH = """
import sys, uvicorn
from uvicorn.supervisors import Multiprocess
from income_ledger.server import tcp_socket
config = uvicorn.Config("bench.floor_app:app", host="127.0.0.1", port=int(sys.argv[1]),
                        workers=int(sys.argv[2]), access_log=False, log_level="warning")
Multiprocess(config, sockets=[tcp_socket(config.bind_socket())]).run()
"""


class FloorServer:
    """bench/floor_app.py under uvicorn, with the interface run_load needs from Server."""

    def __init__(self, db: Database, mode: str, workers: int, logs: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = os.environ | {
            "FLOOR_MODE": mode,
            "FLOOR_DSN": db.url.replace("postgresql+psycopg2", "postgresql"),
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        }
        self.workers = workers
        self.logs = logs
        self.process: subprocess.Popen[bytes] | None = None
        self.idle: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import httpx

        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, str(self.port), str(self.workers)],
            env=self.env,
            stdout=open(self.logs / "floor.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        # run_load accounts for a projector's CPU: here there is none, so an idle process.
        self.idle = subprocess.Popen(["sleep", "3600"])
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                if httpx.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.logs / "floor.log").read_text(errors="replace"))
            time.sleep(0.2)

    def pids(self) -> dict[str, int]:
        assert self.process is not None and self.idle is not None
        return {"server": self.process.pid, "projector": self.idle.pid}

    def alive(self) -> bool:
        return all(p is not None and p.poll() is None for p in (self.process, self.idle))

    def stop(self) -> None:
        for process in (self.process, self.idle):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def floor_table(db: Database) -> None:
    from bench.floor_app import TABLE

    db.execute(f"DROP TABLE IF EXISTS {TABLE}")
    db.execute(
        f"CREATE TABLE {TABLE} (id BIGSERIAL PRIMARY KEY, originator_id UUID NOT NULL, "
        "originator_version BIGINT NOT NULL, topic TEXT NOT NULL, state BYTEA NOT NULL)"
    )
    db.execute(
        f"CREATE UNIQUE INDEX {TABLE}_aggregate_idx ON {TABLE} (originator_id, originator_version)"
    )


def one_run(db: Database, mode: str, args: argparse.Namespace, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as logs:
        if mode == "ledger":
            server: Any = Server(db.url, Path(logs), workers=args.workers)
        else:
            floor_table(db)
            server = FloorServer(db, mode, args.workers, Path(logs))
        server.start()
        try:
            load = run_load("write", args.clients, server, db, args, tag=f"{mode}{repeat}")
        finally:
            server.stop()
    (raw,) = raw_write_baselines(db, [1], args.baseline_seconds)[:1]
    ok = load.statuses.get("201", 0)
    return {
        "mode": mode,
        "per_s": load.per_second,
        "errors": sum(load.statuses.values()) - ok,
        "median_ms": load.latency.get("median_ms", 0.0),
        "server_ms": 1000 * load.cores["server"] / load.per_second if load.per_second else 0.0,
        "cores": load.cores,
        "raw_per_s": raw["per_second"],
        "load": uptime(),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.http_floor", description=__doc__)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--baseline-seconds", type=float, default=5)
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument("--pg-db", default="income_ledger_bench_floor", help="dropped!")
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        raise SystemExit(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    db = Database(args.pg_admin_url, args.pg_db)
    prepare(db)
    runs: list[dict[str, Any]] = []
    try:
        # Modes alternate within each repeat, so a noisy minute spreads over all of them.
        for repeat in range(args.repeats):
            for mode in modes:
                run = one_run(db, mode, args, repeat)
                runs.append(run)
                console.print(
                    f"{mode:7} {run['per_s']:7,.0f}/s (errors {run['errors']}) vs raw "
                    f"{run['raw_per_s']:7,.0f}/s = {run['per_s'] / run['raw_per_s']:.2f}; "
                    f"median {run['median_ms']:.1f} ms; server CPU {run['server_ms']:.2f} ms "
                    f"per request; cores { ({k: round(v, 2) for k, v in run['cores'].items()}) }; "
                    f"{run['load']}",
                    highlight=False,
                )
    finally:
        db.drop()
    console.print("\nmode     median/s  raw median/s  ratio of medians  server CPU ms/request")
    summary = {}
    for mode in modes:
        mine = [r for r in runs if r["mode"] == mode]
        per_s = statistics.median(r["per_s"] for r in mine)
        raw = statistics.median(r["raw_per_s"] for r in mine)
        cpu = statistics.median(r["server_ms"] for r in mine)
        summary[mode] = {"per_s": per_s, "raw_per_s": raw, "ratio": per_s / raw, "server_ms": cpu}
        console.print(f"{mode:7} {per_s:10,.0f} {raw:13,.0f} {per_s / raw:17.2f} {cpu:21.2f}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
