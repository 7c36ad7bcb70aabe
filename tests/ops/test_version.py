"""`income-ledger --version` says which code runs."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from income_ledger.version import version

CHECKOUT = Path(__file__).resolve().parents[2]


def test_version_option_prints_the_checkout_version_and_exits_0() -> None:
    expected = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]["version"]
    result = subprocess.run(
        [sys.executable, "-m", "income_ledger.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"income-ledger {expected}"
    assert version() == expected
