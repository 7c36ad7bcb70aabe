"""uvicorn's two HTTP/1.1 implementations answer alike, byte for byte.

`income-ledger serve` lets uvicorn choose: httptools and uvloop when installed (they are
dependencies since they cost the server less CPU per request, issue #9), h11 and asyncio
otherwise. Either way every response is the same bytes: the same requests to a server of
each kind, on two fresh databases, get the same status line, headers (in order) and body,
the `date` header aside.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from income_ledger.bootstrap import init_database
from income_ledger.settings import Settings
from tests.api.conftest import TOKENS
from tests.api.test_serve import free_port
from tests.domain.helpers import CT_REF

pytest.importorskip("httptools")
pytest.importorskip("uvloop")

OFFICER = f"Bearer {TOKENS['officer']}"
AS_OFFICER = {"Authorization": OFFICER, "Content-Type": "application/json"}
RECEIPT = {
    "channel": "card",
    "amount_pence": 1234,
    "reference": CT_REF,
    "external_id": "till-1-0001",
    "received_at": "2026-03-31T10:00:00Z",
}
# (method, path, headers, body): what a client sends; each also carries an X-Request-ID.
REQUESTS: list[tuple[str, str, dict[str, str], bytes]] = [
    ("GET", "/health", {}, b""),
    ("HEAD", "/health", {}, b""),
    ("GET", "/openapi.json", {}, b""),
    ("POST", "/payments", {"Content-Type": "application/json"}, json.dumps(RECEIPT).encode()),
    ("POST", "/payments", AS_OFFICER, b'{"channel": "card_in_person"'),
    ("POST", "/payments", AS_OFFICER, json.dumps({"amount_pence": -1}).encode()),
    ("POST", "/payments", AS_OFFICER, json.dumps(RECEIPT).encode()),
    ("POST", "/payments", AS_OFFICER, json.dumps(RECEIPT).encode()),
    (
        "POST",
        "/payments",
        AS_OFFICER | {"Idempotency-Key": "k-1"},
        json.dumps(RECEIPT | {"external_id": "till-1-0002"}).encode(),
    ),
    (
        "POST",
        "/payments",
        AS_OFFICER | {"Idempotency-Key": "k-1"},
        json.dumps(RECEIPT | {"external_id": "till-1-0002"}).encode(),
    ),
    ("GET", "/funds/NOPE", AS_OFFICER, b""),
    ("GET", "/funds/CT", AS_OFFICER, b""),
]


RECORDED_AT = re.compile(rb'"recorded_at":"[^"]*"')
CONTENT_LENGTH = re.compile(rb"^content-length: \d+$")


def serve(tmp_path: Path, http: str, loop: str) -> tuple[subprocess.Popen[bytes], int]:
    url = f"sqlite:///{tmp_path / f'{http}.db'}"
    init_database(Settings(database_url=url))
    port = free_port()
    env = os.environ | {
        "LEDGER_DATABASE_URL": url,
        "LEDGER_API_KEYS": f"officer:officer:{TOKENS['officer']}",
        "LEDGER_RUN_PROJECTIONS": "0",
        "LEDGER_AUTO_LINK_STATEMENTS": "false",
    }
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "--factory"),
            *("income_ledger.server:app_from_environment", "--port", str(port)),
            *("--http", http, "--loop", loop, "--log-level", "warning", "--no-access-log"),
        ],
        env=env,
        cwd=Path(__file__).parents[2],
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, "no server"
            time.sleep(0.1)


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "X-Request-ID: same-id-1"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    if body:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def keep_alive_answers(port: int) -> list[bytes]:
    """The raw bytes answered to each request, all sent on one keep-alive connection."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        received = b""
        for method, path, headers, body in REQUESTS:
            sock.sendall(request_bytes(method, path, headers, body))
            while b"\r\n\r\n" not in received:
                received += sock.recv(65536)
            head, _, received = received.partition(b"\r\n\r\n")
            length = 0 if method == "HEAD" else int(header(head, b"content-length"))
            while len(received) < length:
                received += sock.recv(65536)
            answers.append(head + b"\r\n\r\n" + received[:length])
            received = received[length:]
    return answers


def closing_answer(port: int) -> bytes:
    """The raw bytes answered to a request that asks to close the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request_bytes("GET", "/health", {"Connection": "close"}, b""))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def header(head: bytes, name: bytes) -> bytes:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.lower() == name:
            return value.strip()
    raise AssertionError(f"no {name!r} header in {head!r}")


def without_date(answer: bytes) -> bytes:
    """The answer without what differs from one moment to the next: the `date` header, the
    times a receipt was recorded at (and so its body's length)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"date:")]
    if b"recorded_at" in body:
        body = RECORDED_AT.sub(b'"recorded_at":"-"', body)
        lines = [CONTENT_LENGTH.sub(b"content-length: -", line) for line in lines]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def test_h11_and_httptools_answer_the_same_bytes(tmp_path) -> None:
    answers, closing = {}, {}
    for http, loop in (("h11", "asyncio"), ("httptools", "uvloop")):
        process, port = serve(tmp_path, http, loop)
        try:
            answers[http] = [without_date(answer) for answer in keep_alive_answers(port)]
            closing[http] = without_date(closing_answer(port))
        finally:
            process.terminate()
            process.wait(timeout=20)
    statuses = [answer.split(b"\r\n", 1)[0] for answer in answers["h11"]]
    assert statuses[3] == b"HTTP/1.1 401 Unauthorized"
    assert statuses[6] == b"HTTP/1.1 201 Created", answers["h11"][6]
    assert statuses[7] == b"HTTP/1.1 200 OK"
    for request, h11, httptools in zip(REQUESTS, answers["h11"], answers["httptools"], strict=True):
        assert h11 == httptools, request[:2]
    # Closing the connection, uvicorn's own header is spelled `Connection` by h11 and
    # `connection` by httptools (names are case-insensitive); all else is the same.
    assert b"\r\nconnection: close\r\n" in closing["httptools"]
    assert closing["httptools"] == closing["h11"].replace(
        b"Connection: close", b"connection: close"
    )
