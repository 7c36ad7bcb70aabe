"""The garbage collector's pause around bulk commands: resumed after, never turned on by us."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from runtime.collector import collector_paused


@pytest.fixture
def collector_state() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_the_collector_is_paused_inside_and_resumed_after_nested_pauses(
    collector_state: None,
) -> None:
    gc.enable()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer command still runs
    assert gc.isenabled()


def test_the_collector_is_resumed_when_the_command_fails(collector_state: None) -> None:
    gc.enable()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("refused")
    assert gc.isenabled()


def test_a_collector_turned_off_by_someone_else_stays_off(collector_state: None) -> None:
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()
