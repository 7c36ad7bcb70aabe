"""The least an HTTP write can cost here: bare Starlette apps for bench.http_floor.

Each app answers POST /payments as the ledger does (201, a small JSON body, a
Ledger-Position header) and does no more than its mode says. FLOOR_MODE picks one:

- ``hello``: parse the JSON body, answer. No database.
- ``insert``: also one event-sized row INSERT + COMMIT on the worker thread's own psycopg2
  connection (the raw baseline's statement, behind HTTP).
- ``group``: also the row, but written by one writer thread per process that takes every
  row waiting (execute_values, one COMMIT) and answers each request after its commit: group
  commit with nothing else of the ledger's.

FLOOR_DSN is the database. Nothing of the ledger is imported: this is the floor under it.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import uuid
from typing import Any

import orjson
import psycopg2
import psycopg2.extras
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TABLE = "bench_floor_events"
TOPIC = "domain.payment:Payment.Received"
STATE = os.urandom(450)
INSERT = f"INSERT INTO {TABLE} (originator_id, originator_version, topic, state) VALUES %s"

_local = threading.local()


def _connection() -> Any:
    if getattr(_local, "connection", None) is None:
        psycopg2.extras.register_uuid()
        _local.connection = psycopg2.connect(os.environ["FLOOR_DSN"])
    return _local.connection


def _insert_one() -> None:
    connection = _connection()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s)",
            (uuid.uuid4(), 1, TOPIC, STATE),
        )
    connection.commit()


class GroupWriter:
    """One thread writing every waiting row in one transaction, then waking their requests."""

    def __init__(self) -> None:
        self.waiting: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]
        self.waiting = queue.SimpleQueue()
        threading.Thread(target=self._run, daemon=True).start()

    async def write(self) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self.waiting.put((loop, done))
        await done

    def _run(self) -> None:
        connection = _connection()
        while True:
            batch = [self.waiting.get()]
            while True:
                try:
                    batch.append(self.waiting.get_nowait())
                except queue.Empty:
                    break
            with connection.cursor() as cursor:
                psycopg2.extras.execute_values(
                    cursor, INSERT, [(uuid.uuid4(), 1, TOPIC, STATE) for _ in batch]
                )
            connection.commit()
            for loop, done in batch:
                loop.call_soon_threadsafe(done.set_result, None)


_writer: GroupWriter | None = None


async def payments(request: Request) -> Response:
    body = orjson.loads(await request.body())
    mode = os.environ.get("FLOOR_MODE", "hello")
    if mode == "insert":
        await run_in_threadpool(_insert_one)
    elif mode == "group":
        global _writer
        if _writer is None:
            _writer = GroupWriter()
        await _writer.write()
    answer = {"payment_id": str(uuid.uuid4()), "amount_pence": body.get("amount_pence")}
    return Response(
        orjson.dumps(answer),
        status_code=201,
        media_type="application/json",
        headers={"Ledger-Position": "1"},
    )


async def health(_: Request) -> Response:
    return Response(b"{}", media_type="application/json")


app = Starlette(routes=[Route("/payments", payments, methods=["POST"]), Route("/health", health)])
