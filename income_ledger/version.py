"""The ledger's version, for `income-ledger --version` and the API description."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "income-ledger"


def version() -> str:
    """The version of the code that is running.

    Run from a source checkout (or an editable install), the checkout's pyproject.toml says
    which code this is: installed metadata may be older than the tree, or belong to another
    tree. Installed from a wheel there is no pyproject.toml beside the package, and the
    package metadata says it.
    """
    return _checkout_version() or _installed_version() or "unknown"


def _checkout_version() -> str | None:
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text()).get("project", {})
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    if project.get("name") != DISTRIBUTION or not isinstance(project.get("version"), str):
        return None
    return str(project["version"])


def _installed_version() -> str | None:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
