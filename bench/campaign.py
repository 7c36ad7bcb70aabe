"""Reliability campaign (issue #14), re-run at scale on PostgreSQL: a soak, not a test.

The bounded versions of these checks run in CI (tests/api/test_concurrency_http.py,
tests/api/test_webhooks.py, tests/projections); this script repeats them at the campaign's
scale against real processes and prints each figure with how it was measured:

1. Duplicate deliveries. `income-ledger serve --workers 2` and `income-ledger project` on a
   scratch database; --duplicates POST /payments deliveries, each of --duplicates/--repeats
   distinct external ids delivered --repeats times (half of the ids with an Idempotency-Key,
   the same key on every delivery), shuffled and sent by --threads threads, each on its own
   keep-alive connection; plus --webhooks GOV.UK Pay payment ids, each message delivered
   --repeats times, signed. Figures: responses by status (any 5xx breaks it), external ids in
   the event store with other than exactly one Received event (must be 0), and
   `projections verify` once the projector has caught up (must be ok).
2. Projector kills. While a writer thread records payments over HTTP, start `income-ledger
   project`, wait until it has applied something, SIGKILL it after a random 0-0.5 s, repeat
   --kills times (or until --kill-minutes have passed). Then `project --once`, `projections
   verify` and `audit verify` must all succeed.

PostgreSQL restarts are not part of it: the server is shared, and this script never stops it.

    .venv/bin/python -m bench.campaign [--duplicates 10000] [--kills 100]
        [--pg-admin-url postgresql://postgres@127.0.0.1:5432/postgres] [--pg-db campaign_scratch]

Exit status 1 when any figure is broken.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from bench.http_env import BIN, DEFAULT_PG_ADMIN_URL, Database, cli_env, free_port
from income_ledger.bootstrap import build_ledger
from income_ledger.settings import Settings
from projections.schema import PROJECTION_NAME

TOKEN = "campaign-officer-token-0123456789"
API_KEYS = f"campaign:officer:{TOKEN}"
WEBHOOK_SECRET = "campaign-webhook-secret-0123456789"
REFERENCE = "12345679"  # a valid Council Tax reference in the sample chart


class Local(threading.local):
    connection: http.client.HTTPConnection | None = None


class Api:
    """POSTs on one keep-alive connection per thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = Local()

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        for attempt in range(2):
            if self.local.connection is None:
                self.local.connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=60
                )
            try:
                self.local.connection.request("POST", path, body=body, headers=headers)
                response = self.local.connection.getresponse()
                response.read()
                return response.status
            except (http.client.HTTPException, ConnectionError):
                # The server closed an idle keep-alive connection: reconnect once.
                self.local.connection.close()
                self.local.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def record_payment(self, external_id: str, amount_pence: int, key: str | None) -> int:
        body = json.dumps(
            {
                "channel": "card",
                "amount_pence": amount_pence,
                "reference": REFERENCE,
                "external_id": external_id,
            }
        ).encode()
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        return self.post("/payments", body, headers)

    def govuk_pay_webhook(self, payment_id: str, amount_pence: int) -> int:
        body = json.dumps(
            {
                "webhook_message_id": f"msg-{payment_id}",
                "api_version": 1,
                "created_date": "2026-11-20T09:31:00.000Z",
                "resource_id": payment_id,
                "resource_type": "payment",
                "event_type": "card_payment_succeeded",
                "resource": {
                    "payment_id": payment_id,
                    "amount": amount_pence,
                    "reference": REFERENCE,
                    "description": "Council tax",
                    "metadata": {"fund_code": "CT"},
                    "created_date": "2026-11-20T09:30:00.000Z",
                    "state": {"status": "success"},
                },
            }
        ).encode()
        signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Pay-Signature": signature, "Content-Type": "application/json"}
        return self.post("/webhooks/govuk-pay", body, headers)


class Processes:
    """`serve` and `project` subprocesses, logging into one directory."""

    def __init__(self, url: str, logs: Path) -> None:
        self.url = url
        self.logs = logs
        self.env = cli_env(
            url,
            LEDGER_API_KEYS=API_KEYS,
            LEDGER_RUN_PROJECTIONS="false",
            LEDGER_GOVUK_PAY_WEBHOOK_SECRETS=WEBHOOK_SECRET,
            LEDGER_LOG_LEVEL="WARNING",
        )
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [str(BIN / "income-ledger"), *args],
            env=self.env,
            stdout=open(self.logs / log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        self.started.append(process)
        return process

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "income-ledger"), *args], env=self.env, capture_output=True, text=True
        )

    def serve(self, workers: int) -> int:
        port = free_port()
        server = self.start(
            *("serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
            log="serve.log",
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"serve exited: see {self.logs}/serve.log")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    connection.close()
                    time.sleep(2 * workers)  # let every worker finish starting
                    return port
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"serve did not answer /health: see {self.logs}/serve.log")

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Store:
    """Reads the event store and the projection's tracked position directly."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)

    def tracked_position(self) -> int:
        with self.engine.connect() as connection:
            position = connection.execute(
                text("SELECT position FROM projection_tracking WHERE projection_name = :name"),
                {"name": PROJECTION_NAME},
            ).scalar()
        return int(position or 0)

    def receipts_by_external_id(self) -> Counter[tuple[str, str]]:
        ledger = build_ledger(Settings(database_url=self.url))
        try:
            return Counter(
                (event.channel, event.external_id)
                for _, event in ledger.read_events()
                if type(event).__name__ == "Received" and event.external_id
            )
        finally:
            ledger.close()

    def last_position(self) -> int:
        ledger = build_ledger(Settings(database_url=self.url))
        try:
            return int(ledger.recorder.max_notification_id() or 0)
        finally:
            ledger.close()

    def wait_caught_up(self, timeout_seconds: float = 300) -> bool:
        target = self.last_position()
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.tracked_position() >= target:
                return True
            time.sleep(0.5)
        return False


def verify(processes: Processes) -> tuple[bool, str]:
    done = processes.cli("projections", "verify", "--json")
    try:
        ok = done.returncode == 0 and bool(json.loads(done.stdout).get("ok"))
    except json.JSONDecodeError:
        ok = False
    return ok, (done.stdout.strip() or done.stderr.strip())[:400]


def duplicate_deliveries(
    args: argparse.Namespace, api: Api, store: Store, processes: Processes
) -> dict[str, Any]:
    distinct = max(1, args.duplicates // args.repeats)
    jobs: list[tuple[str, int]] = []
    for n in range(distinct):
        jobs += [("payment", n)] * args.repeats
    for n in range(args.webhooks):
        jobs += [("webhook", n)] * args.repeats
    random.Random(args.seed).shuffle(jobs)

    def deliver(job: tuple[str, int]) -> int:
        kind, n = job
        try:
            if kind == "webhook":
                return api.govuk_pay_webhook(f"campaign-pay-{n:05d}", 1_000 + n)
            key = f"campaign-key-{n:05d}" if n % 2 == 0 else None
            return api.record_payment(f"campaign-{n:05d}", 1_000 + n, key)
        except (OSError, http.client.HTTPException):
            return 0  # no response at all

    started = time.monotonic()
    with ThreadPoolExecutor(args.threads) as pool:
        statuses = Counter(pool.map(deliver, jobs))
    seconds = time.monotonic() - started
    receipts = store.receipts_by_external_id()
    expected = {("card", f"campaign-{n:05d}") for n in range(distinct)} | {
        ("govuk_pay", f"campaign-pay-{n:05d}") for n in range(args.webhooks)
    }
    not_once = sorted(
        f"{c}:{e}={receipts.get((c, e), 0)}" for c, e in expected if receipts.get((c, e), 0) != 1
    )
    caught_up = store.wait_caught_up()
    verified, verify_output = verify(processes)
    bad_statuses = sum(count for status, count in statuses.items() if status >= 500 or status == 0)
    return {
        "deliveries": len(jobs),
        "payment_ids": distinct,
        "webhook_ids": args.webhooks,
        "seconds": round(seconds, 1),
        "statuses": dict(sorted(statuses.items())),
        "responses_5xx_or_none": bad_statuses,
        "ids_not_received_exactly_once": len(not_once),
        "examples_not_once": not_once[:10],
        "projector_caught_up": caught_up,
        "verify_ok": verified,
        "verify_output": verify_output,
        "ok": bad_statuses == 0 and not not_once and caught_up and verified,
    }


class Writer(threading.Thread):
    """Records payments over HTTP until stopped, so the projector always has work."""

    def __init__(self, api: Api) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.stopping = threading.Event()
        self.statuses: Counter[int] = Counter()

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            try:
                status = self.api.record_payment(f"kill-writer-{n:06d}", 500 + n % 1000, None)
            except (OSError, http.client.HTTPException):
                status = 0
            self.statuses[status] += 1
            n += 1


def projector_kills(
    args: argparse.Namespace, api: Api, store: Store, processes: Processes
) -> dict[str, Any]:
    rng = random.Random(args.seed + 1)
    writer = Writer(api)
    writer.start()
    started = time.monotonic()
    deadline = started + args.kill_minutes * 60
    kills = 0
    never_applied = 0
    while kills < args.kills and time.monotonic() < deadline:
        before = store.tracked_position()
        projector = processes.start("project", log="project-kills.log")
        applied_by = time.monotonic() + 30
        while store.tracked_position() <= before and time.monotonic() < applied_by:
            time.sleep(0.05)
        if store.tracked_position() <= before:
            never_applied += 1
        time.sleep(rng.uniform(0, 0.5))
        projector.send_signal(signal.SIGKILL)
        projector.wait()
        kills += 1
    writer.stopping.set()
    writer.join()
    seconds = time.monotonic() - started
    once = processes.cli("project", "--once")
    verified, verify_output = verify(processes)
    audit = processes.cli("audit", "verify")
    bad_writes = sum(c for s, c in writer.statuses.items() if s >= 500 or s == 0)
    return {
        "kills": kills,
        "kills_asked": args.kills,
        "seconds": round(seconds, 1),
        "kills_before_anything_applied": never_applied,
        "writer_statuses": dict(sorted(writer.statuses.items())),
        "project_once_exit": once.returncode,
        "verify_ok": verified,
        "verify_output": verify_output,
        "audit_verify_exit": audit.returncode,
        "audit_output": (audit.stdout.strip() or audit.stderr.strip())[:400],
        "ok": once.returncode == 0
        and verified
        and audit.returncode == 0
        and bad_writes == 0
        and never_applied == 0,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    db = Database(args.pg_admin_url, args.pg_db)
    db.recreate()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-campaign-") as logs:
        processes = Processes(db.url, Path(logs))
        for setup in (("db", "init"), ("funds", "add", "--sample")):
            done = processes.cli(*setup)
            if done.returncode != 0:
                raise RuntimeError(f"income-ledger {' '.join(setup)}: {done.stderr.strip()}")
        store = Store(db.url)
        try:
            api = Api(processes.serve(args.workers))
            projector = processes.start("project", log="project.log")
            results["duplicates"] = duplicate_deliveries(args, api, store, processes)
            projector.send_signal(signal.SIGINT)
            projector.wait(timeout=30)
            results["kills"] = projector_kills(args, api, store, processes)
        finally:
            processes.stop_all()
            store.engine.dispose()
            if args.keep_logs:
                for log in Path(logs).iterdir():
                    (args.keep_logs / log.name).write_bytes(log.read_bytes())
    if not args.keep_db:
        db.drop()
    return results


def print_report(results: dict[str, Any]) -> None:
    d = results["duplicates"]
    print("1. Duplicate deliveries (serve --workers 2 + project, PostgreSQL)")
    print(
        f"   {d['deliveries']} deliveries in {d['seconds']} s: {d['payment_ids']} POST /payments "
        f"external ids and {d['webhook_ids']} GOV.UK Pay payment ids, each delivered "
        f"{d['deliveries'] // max(1, d['payment_ids'] + d['webhook_ids'])} times, concurrently"
    )
    print(
        f"   responses by status: {d['statuses']}; 5xx or no response: {d['responses_5xx_or_none']}"
    )
    print(
        f"   ids without exactly one Received event in the store: "
        f"{d['ids_not_received_exactly_once']} {d['examples_not_once'] or ''}"
    )
    print(
        f"   projector caught up: {d['projector_caught_up']}; projections verify ok: {d['verify_ok']}"
    )
    print(f"   => {'OK' if d['ok'] else 'BROKEN'}")
    k = results["kills"]
    print("2. Projector kills (SIGKILL after it applied something, while a writer records)")
    print(
        f"   {k['kills']} kills (asked {k['kills_asked']}) in {k['seconds']} s; before anything applied: "
        f"{k['kills_before_anything_applied']}; writer statuses: {k['writer_statuses']}"
    )
    print(
        f"   project --once exit {k['project_once_exit']}; projections verify ok: "
        f"{k['verify_ok']}; audit verify exit {k['audit_verify_exit']}"
    )
    print(f"   => {'OK' if k['ok'] else 'BROKEN'}")
    print("3. PostgreSQL restarts: not run (the server is shared and never stopped here)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duplicates", type=int, default=1000, help="POST /payments deliveries")
    parser.add_argument("--repeats", type=int, default=10, help="deliveries per external id")
    parser.add_argument("--webhooks", type=int, default=20, help="GOV.UK Pay payment ids")
    parser.add_argument("--threads", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--kill-minutes", type=float, default=8.0, help="time budget for kills")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN_URL)
    parser.add_argument("--pg-db", default="campaign_scratch")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    parser.add_argument("--keep-logs", type=Path, help="copy the process logs here")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(figure["ok"] for figure in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
