"""The API fixtures (a real app on each backend), and helpers to run the CLI as a process."""

from __future__ import annotations

import time

import httpx

from tests.api.conftest import client, services  # noqa: F401  (fixtures)
from tests.api.test_serve import cli  # noqa: F401  (one way to run the CLI in a process)


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
