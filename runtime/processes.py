"""How many worker processes to start when nobody said: one per core this process may use."""

from __future__ import annotations

import os

MAX_PROCESSES = 32


def default_processes() -> int:
    """One per CPU core this process may use."""
    return max(1, min(MAX_PROCESSES, len(os.sched_getaffinity(0))))
