"""The failed sign-in limit on its own (no database, no server)."""

from __future__ import annotations

import time

from web.sign_in_limits import SignInLimits


def test_an_address_waits_after_its_failures_and_others_do_not() -> None:
    limits = SignInLimits(max_failures=3, window_seconds=60)
    for _ in range(2):
        limits.failed("10.0.0.1")
    assert limits.wait_seconds("10.0.0.1") == 0
    limits.failed("10.0.0.1")
    assert 59 < limits.wait_seconds("10.0.0.1") <= 60
    assert limits.wait_seconds("10.0.0.2") == 0


def test_failures_older_than_the_window_are_forgotten() -> None:
    limits = SignInLimits(max_failures=2, window_seconds=0.2)
    limits.failed("10.0.0.1")
    limits.failed("10.0.0.1")
    assert limits.wait_seconds("10.0.0.1") > 0
    time.sleep(0.25)
    assert limits.wait_seconds("10.0.0.1") == 0
