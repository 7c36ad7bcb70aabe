"""The browser tests rewrite the committed docs/screenshots only when asked."""

from __future__ import annotations

import pytest

from tests.web.conftest import screenshots_wanted


@pytest.mark.parametrize(
    ("value", "wanted"),
    [(None, False), ("", False), ("0", False), ("false", False), ("no", False), ("1", True)],
)
def test_screenshots_are_rewritten_only_when_asked(value, wanted) -> None:
    environ = {} if value is None else {"LEDGER_TEST_SCREENSHOTS": value}
    assert screenshots_wanted(environ) is wanted
