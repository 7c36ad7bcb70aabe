"""An HTTP client against the real app, on SQLite and PostgreSQL, with a key per role."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import ApiKeys
from api.services import ApiConfig
from income_ledger.bootstrap import build_projection
from income_ledger.server import build_services
from income_ledger.settings import Settings
from projections.runner import ProjectionRunner

T = TypeVar("T")
WEBHOOK_SECRET = "test-webhook-secret"
REFUND_LIMIT_PENCE = 10_000
TOKENS = {
    "officer": "officer-token-0123456789",
    "officer2": "officer-token-9876543210",
    "supervisor": "supervisor-token-0123456789",
    "supervisor2": "supervisor-token-9876543210",
    "auditor": "auditor-token-0123456789",
    "reporting": "reporting-token-0123456789",
    "integration": "integration-token-0123456789",
}
# A key limited to the HOUSING fund group (README, Roles), beside one key per role.
LIMITED_TOKENS = {"housing": ("officer@HOUSING", "housing-token-0123456789")}
KEYS = ApiKeys.parse(
    ",".join(
        [f"{name}:{name.rstrip('2')}:{token}" for name, token in TOKENS.items()]
        + [f"{name}:{role}:{token}" for name, (role, token) in LIMITED_TOKENS.items()]
    )
)


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


def upload_statement(client: TestClient, statement: bytes) -> list[dict]:
    """POST a bank statement to /imports as the integration role (201 expected), then its
    lines as GET /imports/{id} gives them."""
    uploaded = client.post(
        "/imports",
        files={"file": ("stmt.xml", statement, "application/xml")},
        headers=auth("integration"),
    )
    assert uploaded.status_code == 201, uploaded.text
    batch_id = uploaded.json()["batch"]["batch_id"]
    return client.get(f"/imports/{batch_id}", headers=auth("officer")).json()["lines"]


def signed(message: dict, secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(message).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Pay-Signature": signature, "Content-Type": "application/json"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, refund_approval_limit_pence=REFUND_LIMIT_PENCE)


@pytest.fixture
def services(ledger, settings):
    services = build_services(settings, ledger, KEYS)
    services.config = ApiConfig(
        read_wait_seconds=5.0,
        govuk_pay_webhook_secret=WEBHOOK_SECRET,
        govuk_pay_ledger_codes={"R2010": "HRA"},
        auto_link_delay_seconds=0.1,  # the runs after requests: soon, to keep tests short
    )
    yield services
    services.read_engine.dispose()


@pytest.fixture
def client(services, settings, ledger) -> Iterator[TestClient]:
    """The app with its projection following in a thread, as `serve` runs it."""
    projection = build_projection(settings, ledger)
    runner = ProjectionRunner(projection, idle_wait_s=0.1)
    thread = runner.start_thread()
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        yield client
    runner.stop()
    thread.join(timeout=10)
    projection.engine.dispose()


@pytest.fixture
def base_url(services) -> Iterator[str]:
    """A real uvicorn serving the app in a thread of this process; its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(services), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def eventually(check: Callable[[], T], timeout_s: float = 15.0) -> T:
    """`check()` once it is truthy (what runs after a request, off it), polled for a bounded
    time: the test fails, rather than hangs, when it never becomes so."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out waiting for what runs after a request"
        time.sleep(0.05)
