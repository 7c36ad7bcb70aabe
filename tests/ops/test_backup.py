"""`income-ledger db backup`: a consistent SQLite copy while the ledger is written to; the
pg_dump command for PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from application.ledger import CommandContext, RecordPayment
from income_ledger.bootstrap import build_audit_chain, build_ledger, build_projection, init_database
from income_ledger.settings import Settings
from projections.runner import ProjectionRunner
from tests.domain.helpers import CT_REF
from tests.ops.conftest import cli


@pytest.fixture
def sqlite_settings(tmp_path) -> Settings:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    init_database(settings)
    return settings


def test_a_backup_taken_while_payments_are_recorded_verifies(sqlite_settings, tmp_path) -> None:
    """As under `serve`: one thread records payments, another projects them and chains them;
    the backup (another process) is the database as of one moment, which both verifiers
    accept."""
    url = sqlite_settings.database_url
    ledger = build_ledger(sqlite_settings)
    assert cli(url, "funds", "add", "--sample").returncode == 0
    runner = ProjectionRunner(
        build_projection(sqlite_settings, ledger),
        companions=[build_audit_chain(sqlite_settings, ledger)],
        idle_wait_s=0.05,
    )
    stop = threading.Event()
    recorded: list[int] = []

    def record() -> None:
        context = CommandContext("officer:writer")
        n = 0
        while not stop.is_set():
            n += 1
            ledger.record_payment(RecordPayment("cash", 100 + n, CT_REF), context)
            recorded.append(n)

    runner_thread = runner.start_thread()
    writer = threading.Thread(target=record)
    writer.start()
    try:
        _wait_until(lambda: len(recorded) >= 20 and runner.projection.position() > 0)
        before = len(recorded)
        backup = tmp_path / "backup.db"
        result = cli(url, "db", "backup", str(backup))
        assert result.returncode == 0, result.stderr
        _wait_until(lambda: len(recorded) >= before + 20)  # the writer was never held up
    finally:
        stop.set()
        writer.join(timeout=30)
        runner.stop()
        runner_thread.join(timeout=30)
        ledger.close()
    assert "events up to position" in result.stdout
    copied = f"sqlite:///{backup}"
    for command in (("projections", "verify"), ("audit", "verify")):
        checked = cli(copied, *command)
        assert checked.returncode == 0, (command, checked.stdout, checked.stderr)
    with build_ledger(Settings(database_url=copied)) as copy:
        copied_position = copy.max_position()
    with build_ledger(sqlite_settings) as original:
        assert 0 < copied_position < original.max_position()
    leftovers = sorted(p.name for p in tmp_path.iterdir() if "partial" in p.name)
    assert leftovers == []


def test_an_existing_file_is_kept_unless_overwrite_is_given(sqlite_settings, tmp_path) -> None:
    url = sqlite_settings.database_url
    target = tmp_path / "backup.db"
    target.write_text("an older backup")
    refused = cli(url, "db", "backup", str(target))
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert target.read_text() == "an older backup"
    assert cli(url, "db", "backup", str(target), "--overwrite").returncode == 0
    assert cli(f"sqlite:///{target}", "projections", "verify").returncode == 0


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("ledger.db", "the ledger's own database"),
        ("missing-dir/b.db", "does not exist"),
        (".", "is a directory"),
    ],
)
def test_unusable_targets_are_refused(sqlite_settings, tmp_path, target, message) -> None:
    result = cli(sqlite_settings.database_url, "db", "backup", str(tmp_path / target))
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_missing_database_is_not_created_by_a_backup(tmp_path) -> None:
    result = cli(f"sqlite:///{tmp_path / 'nope.db'}", "db", "backup", str(tmp_path / "b.db"))
    assert result.returncode == 2 and "no SQLite database" in result.stderr
    assert not (tmp_path / "nope.db").exists() and not (tmp_path / "b.db").exists()


def test_postgresql_gets_the_pg_dump_command_without_the_password(tmp_path) -> None:
    url = "postgresql+psycopg2://ledger:s3cret-pw@db.council.example:6543/income?sslmode=require"
    result = cli(url, "db", "backup", str(tmp_path / "ledger.dump"))
    assert result.returncode == 2
    assert result.stdout.strip() == (
        f"pg_dump --format=custom --file={tmp_path / 'ledger.dump'} "
        "'--dbname=postgresql://ledger@db.council.example:6543/income?sslmode=require'"
    )
    assert "s3cret" not in result.stdout + result.stderr
    assert "pg_dump" in result.stderr


def _wait_until(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
