"""Auditor commands: `replay` and `audit ...` (issue #5)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the auditor commands to the main CLI."""
