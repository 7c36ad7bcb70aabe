"""Logs: JSON or console lines, a request id on every line of a request and in its error
bodies, an access line per request without secrets, the same set-up in every process."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from api.app import create_app
from application.ledger import CommandContext, RecordPayment
from income_ledger.logging_setup import JsonFormatter, RequestIdFilter
from tests.api.conftest import TOKENS, auth
from tests.api.test_serve import free_port
from tests.domain.helpers import CT_REF
from tests.ops.conftest import cli, wait_for_health
from tests.projections.test_stuck import block_audit_position

Lines = Callable[[], list[dict]]


@pytest.fixture
def json_log() -> Iterator[Lines]:
    """The JSON lines this process logs while the test runs, as the deployment writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


def access_lines(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["logger"] == "api.access"]


def test_a_client_request_id_is_returned_and_on_the_access_line(client, json_log) -> None:
    response = client.get("/funds", headers=auth("reporting") | {"X-Request-ID": "ticket-42.a"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "ticket-42.a"
    (line,) = access_lines(json_log())
    assert line["request_id"] == "ticket-42.a"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/funds", 200)
    assert line["user"] == "reporting:reporting"
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["level"] == "INFO" and line["time"].endswith("Z")


@pytest.mark.parametrize(
    "sent", [None, "", "has space", "x" * 129, "-leading", "a\tb", "é".encode()]
)
def test_without_a_plain_token_the_server_makes_an_id(client, json_log, sent) -> None:
    headers = auth("reporting") | ({} if sent is None else {"X-Request-ID": sent})
    response = client.get("/funds", headers=headers)
    made = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made), made
    assert access_lines(json_log())[0]["request_id"] == made


def test_the_path_is_the_route_template_and_problems_carry_the_request_id(client, json_log) -> None:
    missing = uuid.uuid4()
    response = client.get(f"/payments/{missing}", headers=auth("officer"))
    assert response.status_code == 404
    assert response.json()["request_id"] == response.headers["X-Request-ID"]
    (line,) = access_lines(json_log())
    assert line["path"] == "/payments/{payment_id}" and str(missing) not in json.dumps(line)
    # Refused by the middleware before the body is read: no user, the id all the same.
    refused = client.post("/payments", content=b"{}", headers={"Content-Type": "application/json"})
    assert refused.status_code == 401
    assert refused.json()["request_id"] == refused.headers["X-Request-ID"]
    assert access_lines(json_log())[-1]["user"] == "-"
    unmatched = client.get("/no-such-page")
    assert unmatched.status_code == 404 and unmatched.json()["request_id"]
    assert access_lines(json_log())[-1]["path"] == "unmatched"


def test_no_key_or_body_reaches_the_log(client, json_log) -> None:
    secret_reference = "PAYER-SECRET-REF-9"
    response = client.post(
        "/payments",
        headers=auth("officer"),
        json={"channel": "cash", "amount_pence": 1234, "reference": secret_reference},
    )
    assert response.status_code == 201
    text = json.dumps(json_log())
    assert access_lines(json_log())[0]["user"] == "officer:officer"
    for secret in (TOKENS["officer"], "Bearer", secret_reference, "1234"):
        assert secret not in text


def test_lines_logged_in_a_worker_thread_and_an_unexpected_error_carry_the_id(
    services, json_log
) -> None:
    app = create_app(services)

    @app.get("/test/log")
    def logs_in_a_thread() -> dict:  # a plain def: FastAPI runs it in its thread pool
        logging.getLogger("tests.ops").warning("inside the request")
        return {}

    @app.get("/test/boom")
    def fails() -> dict:
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as client:
        client.get("/test/log", headers={"X-Request-ID": "req-1"})
        failed = client.get("/test/boom", headers={"X-Request-ID": "req-2"})
    assert failed.status_code == 500
    assert failed.headers["X-Request-ID"] == "req-2" == failed.json()["request_id"]
    lines = json_log()
    inside = next(x for x in lines if x["message"] == "inside the request")
    assert inside["request_id"] == "req-1"
    error = next(x for x in lines if x["message"].startswith("unexpected error"))
    assert error["request_id"] == "req-2" and "RuntimeError: boom" in error["exception"]
    assert [(x["request_id"], x["status"]) for x in access_lines(lines)] == [
        ("req-1", 200),
        ("req-2", 500),
    ]


def test_bad_log_settings_are_refused_with_exit_2(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    result = cli(url, "funds", "list", LEDGER_LOG_FORMAT="xml")
    assert result.returncode == 2
    assert "invalid settings" in result.stderr and "log_format" in result.stderr
    assert cli(url, "--version", LEDGER_LOG_LEVEL="debug", LEDGER_LOG_FORMAT="JSON").returncode == 0


def test_every_worker_of_serve_logs_json_with_request_ids(tmp_path) -> None:
    """`serve --workers 2` hands the logging set-up to each worker process: uvicorn's own
    lines and the access lines of both workers are JSON."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert cli(url, "db", "init").returncode == 0
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = os.environ | {
        "LEDGER_DATABASE_URL": url,
        "LEDGER_API_KEYS": f"ann:reporting:{TOKENS['reporting']}",
        "LEDGER_LOG_FORMAT": "json",
    }
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "income_ledger.cli",
                "serve",
                "--port",
                str(port),
                "--workers=2",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for_health(base)
            for n in range(6):
                httpx.get(f"{base}/health", headers={"X-Request-ID": f"probe-{n}"})
            deadline = time.monotonic() + 20
            while len(_started_workers(log_path)) < 2:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]  # all JSON
    probes = [
        x for x in lines if x["logger"] == "api.access" and x["request_id"].startswith("probe")
    ]
    assert len(probes) == 6 and {x["path"] for x in probes} == {"/health"}
    assert len(_started_workers(log_path)) == 2


def _started_workers(log_path) -> set[int]:
    pids = set()
    for line in log_path.read_text().splitlines():
        record = json.loads(line)
        if record["message"].startswith("Started server process"):
            pids.add(record["pid"])
    return pids


def test_a_stuck_projection_is_logged_as_json_with_its_position(settings, ledger) -> None:
    """`income-ledger project` in JSON mode: the stuck event's position is in the message
    and in a field of its own."""
    context = CommandContext("officer:test")
    ledger.record_payment(RecordPayment("cash", 100, CT_REF), context)
    bad = ledger.max_position() + 1
    ledger.record_payment(RecordPayment("cash", 200, CT_REF), context)
    engine = create_engine(settings.database_url)
    block_audit_position(engine, bad)  # the audit row of the next event exists already
    engine.dispose()
    process = subprocess.Popen(
        [sys.executable, "-m", "income_ledger.cli", "project"],
        env=os.environ
        | {"LEDGER_DATABASE_URL": settings.database_url, "LEDGER_LOG_FORMAT": "json"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Ends the wait below (readline returns at the end of the output) if it never says so.
    watchdog = threading.Timer(120, process.kill)
    watchdog.start()
    try:
        assert process.stderr is not None
        stuck = None
        while stuck is None:
            line = process.stderr.readline()
            assert line, "project ended without saying it is stuck"
            if line.startswith("{"):
                record = json.loads(line)
                if "is stuck" in record["message"]:
                    stuck = record
    finally:
        watchdog.cancel()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert stuck["level"] == "ERROR" and stuck["time"].endswith("Z")
    assert f"position {bad}" in stuck["message"] and stuck["position"] == bad
    assert stuck["projection"]


def test_a_refused_mt940_file_is_not_buried_under_the_librarys_pattern_log(tmp_path) -> None:
    """mt-940 logged each field's regular expression at INFO and a bad field at ERROR:
    dozens of lines of patterns on the officer's terminal above the refusal."""
    from tests.application.test_statement_imports import mt940

    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert cli(url, "db", "init").returncode == 0
    rows = mt940(("C", "12,50", "REF1")).decode().split("\r\n")
    rows[4] = ":61:XX"
    path = tmp_path / "day.sta"
    path.write_bytes("\r\n".join(rows).encode())
    result = cli(url, "import", str(path))
    assert result.returncode == 2
    assert "line 5 (field :61:, a statement line)" in result.stderr
    assert "mt940" not in result.stderr and "(?P<" not in result.stderr
