"""The API fixtures (a real app on each backend), and helpers to run the CLI as a process."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from tests.api.conftest import client, services  # noqa: F401  (fixtures)


def cli(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "income_ledger.cli", *args],
        env=os.environ | {"LEDGER_DATABASE_URL": database_url} | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def wait_for_health(base_url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{base_url}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(0.1)
