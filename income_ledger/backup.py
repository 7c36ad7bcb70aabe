"""`income-ledger db backup`: a consistent copy of a SQLite ledger while it is in use; for
PostgreSQL, the pg_dump command that does the same."""

from __future__ import annotations

import contextlib
import os
import shlex
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from income_ledger.schema_versions import EVENTS_TABLE

# How long the copy waits for a writer's commit to finish before giving up.
BUSY_TIMEOUT_S = 30.0


class BackupRefused(ValueError):
    pass


@dataclass(frozen=True)
class Backup:
    path: Path
    size_bytes: int
    event_position: int


def backup_sqlite(database_url: str, target: Path, *, overwrite: bool = False) -> Backup:
    """Copy the SQLite database to `target` with SQLite's online backup API.

    The whole database is copied in one step, inside one read transaction: the copy is the
    database as of one moment, and in WAL mode writers (a running `serve` or `project`) go
    on meanwhile. The copy is written beside `target` and renamed into place once it has
    passed SQLite's quick check, so a failed backup never leaves a partial file at `target`.
    """
    source = _sqlite_file(database_url)
    _check_target(source, target, overwrite)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        with (
            contextlib.closing(sqlite3.connect(source, timeout=BUSY_TIMEOUT_S)) as origin,
            contextlib.closing(sqlite3.connect(partial)) as copy,
        ):
            origin.backup(copy)
            position = _checked(copy)
        os.replace(partial, target)
    except (sqlite3.Error, OSError) as error:
        raise BackupRefused(f"the backup to {target} failed ({error}); nothing was kept") from None
    finally:
        partial.unlink(missing_ok=True)
    return Backup(target, target.stat().st_size, position)


def _sqlite_file(database_url: str) -> Path:
    name = make_url(database_url).database
    if not name or name == ":memory:":
        raise BackupRefused("LEDGER_DATABASE_URL names no SQLite file to back up")
    path = Path(name)
    if not path.is_file():
        # sqlite3.connect would create an empty database here and back that up.
        raise BackupRefused(f"there is no SQLite database at {path}: check LEDGER_DATABASE_URL")
    return path


def _check_target(source: Path, target: Path, overwrite: bool) -> None:
    if target.exists() and target.resolve() == source.resolve():
        raise BackupRefused(f"{target} is the ledger's own database: choose another file")
    if target.is_dir():
        raise BackupRefused(f"{target} is a directory: give a file name")
    if target.exists() and not overwrite:
        raise BackupRefused(f"{target} exists: choose another file, or pass --overwrite")
    if not target.parent.is_dir():
        raise BackupRefused(f"the directory {target.parent} does not exist")


def _checked(copy: sqlite3.Connection) -> int:
    """The copy's latest event position, once SQLite's quick check has passed."""
    (verdict,) = copy.execute("PRAGMA quick_check").fetchone()
    if verdict != "ok":
        raise BackupRefused(f"the copy failed SQLite's quick check ({verdict}); nothing was kept")
    try:
        (position,) = copy.execute(f"SELECT MAX(id) FROM {EVENTS_TABLE}").fetchone()
    except sqlite3.OperationalError:
        raise BackupRefused(
            "the database has no ledger tables (run `income-ledger db init` first); "
            "nothing was kept"
        ) from None
    return position or 0


def pg_dump_command(database_url: str, target: Path) -> str:
    """The pg_dump command that backs up this PostgreSQL ledger, without the password
    (pg_dump asks for it, or reads PGPASSWORD or ~/.pgpass)."""
    url = make_url(database_url)
    without_password = URL.create(
        "postgresql", url.username, None, url.host, url.port, url.database, url.query
    )
    connection = without_password.render_as_string(hide_password=False)
    return shlex.join(["pg_dump", "--format=custom", f"--file={target}", f"--dbname={connection}"])
