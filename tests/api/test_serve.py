"""`income-ledger serve` as a deployment runs it: a real process, real keys, real HTTP."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import httpx
import pytest

from api.auth import ApiKeys
from income_ledger.server import ConfigurationError, load_api_keys, parse_ledger_codes
from income_ledger.settings import Settings
from tests.domain.helpers import CT_REF


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "income_ledger.cli", *args],
        env=os.environ | {"LEDGER_DATABASE_URL": database_url} | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_serve_with_demo_keys_prints_docs_and_a_key_per_role_and_works(database_url) -> None:
    assert cli(database_url, "db", "init").returncode == 0
    assert cli(database_url, "funds", "add", "--sample").returncode == 0
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "income_ledger.cli",
            "serve",
            "--port",
            str(port),
            "--demo-keys",
            # Several worker processes on PostgreSQL, as production runs it.
            "--workers",
            "2" if database_url.startswith("postgresql") else "1",
        ],
        env=os.environ | {"LEDGER_DATABASE_URL": database_url, "LEDGER_RUN_PROJECTIONS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: list[str] = []
        assert process.stdout is not None
        while not any(line.startswith("serving") for line in lines):
            line = process.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}/docs" in output
        keys = dict(
            re.findall(
                r"^\s+(officer|supervisor|auditor|reporting|integration)\s+(\S+)",
                output,
                re.MULTILINE,
            )
        )
        assert set(keys) == {"officer", "supervisor", "auditor", "reporting", "integration"}
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.1)
        officer = {"Authorization": f"Bearer {keys['officer']}"}
        made = httpx.post(
            f"{base}/payments",
            headers=officer,
            json={"channel": "cash", "amount_pence": 12_500, "reference": CT_REF},
        )
        assert made.status_code == 201
        position = made.json()["position"]
        account = httpx.get(
            f"{base}/accounts/CT/{CT_REF}?min_position={position}",
            headers={"Authorization": f"Bearer {keys['reporting']}"},
        )
        assert account.status_code == 200 and account.json()["balance_pence"] == 12_500
        assert httpx.get(f"{base}/funds").status_code == 401
        assert f"officers' pages at {base}/" in output
        signed_in_on_every_worker(base, keys["officer"])
    finally:
        process.terminate()
        process.wait(timeout=20)


def signed_in_on_every_worker(base: str, key: str) -> None:
    """A web session signed in on one worker is good on each (a new connection each time,
    so the requests spread over the workers)."""
    page = httpx.get(f"{base}/web/sign-in")
    csrf = re.search(r'name="csrf_token" value="([^"]*)"', page.text).group(1)
    signed = httpx.post(
        f"{base}/web/sign-in",
        data={"csrf_token": csrf, "access_key": key},
        cookies=page.cookies,
    )
    assert signed.status_code == 303, signed.text
    for _ in range(12):
        assert httpx.get(f"{base}/web/", cookies=signed.cookies).status_code == 200


def test_serve_refuses_to_start_without_keys(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    assert cli(url, "db", "init").returncode == 0
    result = cli(url, "serve", LEDGER_API_KEYS="")
    assert result.returncode == 2 and "LEDGER_API_KEYS" in result.stderr


def test_keys_come_from_the_environment_and_a_file(tmp_path) -> None:
    path = tmp_path / "keys"
    path.write_text(
        "# staff\nann:officer:ann-token-0123456789\nbea:supervisor:bea-token-0123456789\n"
    )
    keys = load_api_keys(
        Settings(api_keys="cy:auditor:cy-token-0123456789", api_keys_file=str(path))
    )
    assert len(keys) == 3
    assert keys.user_for("bea-token-0123456789").actor == "supervisor:bea"
    assert keys.user_for("nope") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ann:officer", "not user:role:token"),
        ("ann:boss:ann-token-0123456789", "unknown role"),
        ("ann:officer:short", "at least 16"),
        ("a:officer:same-token-0123456789,b:auditor:same-token-0123456789", "repeats"),
    ],
)
def test_bad_key_entries_say_what_is_wrong(text, message) -> None:
    with pytest.raises(ValueError, match=message):
        ApiKeys.parse(text)


def test_missing_key_file_and_bad_ledger_codes_are_configuration_errors(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_api_keys(Settings(api_keys_file=str(tmp_path / "missing")))
    with pytest.raises(ConfigurationError, match="LEDGER_CODE:FUND"):
        parse_ledger_codes("R1010")
    assert parse_ledger_codes("R1010:ct, R2010:HRA") == {"R1010": "CT", "R2010": "HRA"}


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_connections_accepted_by_several_workers_send_without_delay(loop: str) -> None:
    """`serve --workers N` binds the socket itself; each accepted connection must still get
    TCP_NODELAY, or every keep-alive response waits ~40 ms for a delayed ACK (issue #8.12).
    uvicorn runs uvloop's event loop when it is installed (a dependency), asyncio's if not."""
    import asyncio

    import uvicorn

    from income_ledger.server import tcp_socket

    config = uvicorn.Config("income_ledger.server:app_from_environment", port=0)
    listening = tcp_socket(config.bind_socket())

    async def nodelay_of_an_accepted_connection() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connection, sock=listening)
        _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
        try:
            return await asyncio.wait_for(accepted, 5)
        finally:
            writer.close()
            server.close()

    assert listening.proto == socket.IPPROTO_TCP
    run = pytest.importorskip("uvloop").run if loop == "uvloop" else asyncio.run
    assert run(nodelay_of_an_accepted_connection()) != 0
