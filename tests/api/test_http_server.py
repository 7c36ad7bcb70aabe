"""The app behind a real `uvicorn` process, as served: a body over the limit, or from someone
without a key, is refused without being read, so the server's memory does not grow; HEAD is
answered like GET, without the body."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from income_ledger.bootstrap import init_database
from income_ledger.settings import Settings
from tests.api.conftest import TOKENS
from tests.api.test_serve import free_port
from tests.domain.helpers import CT_REF

CHUNKED_BODY_BYTES = 64 * 1024 * 1024
CHUNK = b"x" * (64 * 1024)
RSS_GROWTH_ALLOWED_BYTES = 8 * 1024 * 1024
OFFICER = {"Authorization": f"Bearer {TOKENS['officer']}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """(port, pid) of `uvicorn` serving the app as `income-ledger serve` does, one worker."""
    url = f"sqlite:///{tmp_path_factory.mktemp('bodies') / 'ledger.db'}"
    init_database(Settings(database_url=url))
    port = free_port()
    env = os.environ | {
        "LEDGER_DATABASE_URL": url,
        "LEDGER_API_KEYS": f"officer:officer:{TOKENS['officer']}",
        "LEDGER_GOVUK_PAY_WEBHOOK_SECRET": "secret",
        "LEDGER_RUN_PROJECTIONS": "0",
    }
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "--factory"),
            *("income_ledger.server:app_from_environment", "--port", str(port)),
            *("--log-level", "warning"),
        ],
        env=env,
        cwd=Path(__file__).parents[2],
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "no server"
            time.sleep(0.1)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(timeout=20)


def memory_bytes(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (the peak since the last reset) of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field}")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # Linux: VmHWM starts again from VmRSS


def send_chunked(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict]:
    """POST CHUNKED_BODY_BYTES in chunks, with no Content-Length; the status and body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    chunks = (CHUNK for _ in range(CHUNKED_BODY_BYTES // len(CHUNK)))
    # A server may stop listening once it has answered; the answer is still there to read.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        connection.request(
            "POST",
            path,
            body=chunks,
            headers=headers | {"Content-Type": "application/json"},
            encode_chunked=True,
        )
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    return response.status, body


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/payments", {}, 401, "unauthenticated"),
        ("/payments", {"Authorization": "Bearer not-a-known-key-0000"}, 401, "unauthenticated"),
        ("/payments", OFFICER, 413, "body_too_large"),
        ("/webhooks/govuk-pay", {"Pay-Signature": "0" * 64}, 413, "body_too_large"),
    ],
    ids=["no key", "unknown key", "officer", "webhook"],
)
def test_a_large_chunked_body_is_refused_without_growing_the_server(
    server, path, headers, status, code
) -> None:
    port, pid = server
    httpx.post(f"http://127.0.0.1:{port}{path}", headers=headers, content=b"{}")  # warm up
    reset_peak(pid)
    before = memory_bytes(pid, "VmRSS")
    answered, body = send_chunked(port, path, headers)
    grown = memory_bytes(pid, "VmHWM") - before
    print(f"{path} {code}: {CHUNKED_BODY_BYTES >> 20} MiB sent, server peak RSS grew {grown} bytes")
    assert (answered, body["code"]) == (status, code)
    assert grown < RSS_GROWTH_ALLOWED_BYTES


def test_a_small_chunked_body_is_read_and_recorded(server) -> None:
    port, _ = server
    payload = json.dumps({"channel": "cash", "amount_pence": 100, "reference": CT_REF})
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(
        "POST",
        "/payments",
        body=iter([payload[:10].encode(), payload[10:].encode()]),
        headers=OFFICER | {"Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    assert response.status == 201, response.read()
    connection.close()


def test_a_declared_length_over_the_limit_is_refused_before_the_body(server) -> None:
    port, _ = server
    response = httpx.post(
        f"http://127.0.0.1:{port}/payments", headers=OFFICER, content=b"x" * (65 * 1024)
    )
    assert response.status_code == 413 and response.json()["code"] == "body_too_large"


@pytest.mark.parametrize("path", ["/health", "/funds", "/balances/funds", "/openapi.json"])
def test_head_answers_like_get_without_a_body(server, path) -> None:
    port, _ = server
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=OFFICER) as http:
        got, head = http.get(path), http.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    for header in ("content-type", "content-length"):
        assert head.headers[header] == got.headers[header]


def test_head_is_refused_where_get_is(server) -> None:
    port, _ = server
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
        assert http.head("/funds").status_code == 401
        assert http.head(f"/payments/{uuid4()}/notes", headers=OFFICER).status_code == 405
