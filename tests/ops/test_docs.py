"""docs/operations.md names every setting and every metric the code has."""

from __future__ import annotations

from pathlib import Path

from api.services import Metrics
from income_ledger.settings import Settings

OPERATIONS = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [
        f"LEDGER_{name.upper()}"
        for name in Settings.model_fields
        if f"`LEDGER_{name.upper()}`" not in OPERATIONS
    ]
    assert not missing, f"add these to the configuration table of docs/operations.md: {missing}"


def test_every_metric_is_documented() -> None:
    names = [family.name for family in Metrics().registry.collect()]
    missing = [name for name in names if f"`{name}" not in OPERATIONS]
    assert names and not missing, f"add these to docs/operations.md: {missing}"
