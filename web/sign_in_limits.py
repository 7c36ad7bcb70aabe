"""A limit on failed sign-ins, so that access keys cannot be guessed at speed.

The key is the only thing the sign-in form asks for, so a failed attempt names no user:
failures are counted per client address. Counts live in this process (a worker of
`income-ledger serve --workers N` counts its own), and are forgotten when it restarts.
"""

from __future__ import annotations

import threading
import time
from collections import deque

MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60
# Addresses remembered at most: beyond this the quietest are forgotten first, so that a
# flood of addresses cannot grow the process without limit.
MAX_ADDRESSES = 10_000


class SignInLimits:
    def __init__(
        self, max_failures: int = MAX_FAILURES, window_seconds: float = WINDOW_SECONDS
    ) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait_seconds(self, address: str) -> float:
        """How long this address must wait before it may try again (0: it may try now)."""
        now = time.monotonic()
        with self._lock:
            recent = self._failures.get(address)
            if recent is None or len(self._forget_old(recent, now)) < self.max_failures:
                return 0.0
            return recent[0] + self.window_seconds - now

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            recent = self._failures.setdefault(address, deque(maxlen=self.max_failures))
            self._forget_old(recent, now).append(now)
            if len(self._failures) > MAX_ADDRESSES:
                quietest = min(self._failures, key=lambda a: self._failures[a][-1])
                del self._failures[quietest]

    def _forget_old(self, recent: deque[float], now: float) -> deque[float]:
        while recent and recent[0] <= now - self.window_seconds:
            recent.popleft()
        return recent
