"""Fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL comes from LEDGER_TEST_POSTGRES_URL (default: the local server with trust auth).
Each pytest-xdist worker gets a database of its own. Under CI=true an unreachable PostgreSQL
fails the run; elsewhere those tests skip, saying how to enable them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from application.ledger import CommandContext, IncomeLedger
from domain.sample_chart import SAMPLE_FUNDS
from income_ledger.bootstrap import build_ledger, init_database
from income_ledger.settings import Settings

POSTGRES_URL = os.environ.get(
    "LEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HOW_TO_ENABLE = (
    "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
    "or point LEDGER_TEST_POSTGRES_URL at a server"
)
BACKENDS = ["sqlite", "postgresql"]


def _postgres_problem() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:  # any failure to connect means: no PostgreSQL here
        return f"PostgreSQL not reachable at {POSTGRES_URL} ({type(error).__name__})"
    return None


@pytest.fixture(scope="session")
def postgres_admin_url(test_worker: str, test_run: str) -> Iterator[str]:
    problem = _postgres_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"{problem}; CI requires it: {HOW_TO_ENABLE}", pytrace=False)
        pytest.skip(f"{problem}: {HOW_TO_ENABLE}")
    url = make_url(POSTGRES_URL)
    # One database per run and worker, so that runs side by side never touch each other's.
    name = f"income_ledger_test_{test_run}_{test_worker}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield url.set(database=name).render_as_string(hide_password=False)
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def test_run(request: pytest.FixtureRequest) -> str:
    """The same for every worker of one pytest run (xdist's run id), else this process's."""
    uid = getattr(request.config, "workerinput", {}).get("testrunuid")
    return (uid or f"p{os.getpid()}")[:8].lower()


@pytest.fixture(scope="session")
def test_worker(request: pytest.FixtureRequest) -> str:
    return getattr(request.config, "workerinput", {}).get("workerid", "main")


# The worker's database, as `init_database` left it: its relations and fingerprint.
_pristine: dict[str, tuple[dict[str, str], str]] = {}


def reset_postgres(url: str) -> None:
    _pristine.pop(url, None)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


# A test that asks for a ledger gets a database that `init_database` brought to this release's
# schema: on SQLite a copy of a file initialised once per worker; on PostgreSQL the worker's
# database emptied back to that state (tables the test added dropped, the release's tables
# truncated, sequences restarted), checked against a fingerprint of the initialised schema, so
# a test that altered it (widths, grants, revisions) gets a full reset and `init_database`.
# Initialising costs about 0.4 s a test on PostgreSQL, and several hundred tests ask for it.
# Tests of initialising itself (migrations, racing `db init`) ask for `database_url` or
# `settings` alone, and get an empty database as before.
INITIALISED_FIXTURES = {"empty_ledger"}


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "initialised.db"
    init_database(Settings(database_url=f"sqlite:///{path}"))
    # One self-contained file to copy: nothing may be left in a write-ahead log beside it.
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    engine.dispose()
    assert busy == 0, "the template's write-ahead log could not be checkpointed"
    return path


_RELATIONS = """
SELECT relname, relkind FROM pg_class
WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
"""
# Everything in the schema a test could change and a truncate would not undo.
_FINGERPRINT = """
SELECT md5(coalesce(string_agg(item, '|' ORDER BY item), '')) FROM (
    SELECT format('%s.%s %s %s %s %s %s', c.relname, a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_get_expr(d.adbin, d.adrelid), c.relacl, c.relrowsecurity) AS item
    FROM pg_class c
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
    WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL SELECT conname || pg_get_constraintdef(oid) FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace
    UNION ALL SELECT tgname || tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal
    UNION ALL SELECT 'fn ' || proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
    UNION ALL SELECT 'type ' || typname FROM pg_type
        WHERE typnamespace = 'public'::regnamespace AND typtype IN ('c', 'd', 'e')
    UNION ALL SELECT format('seq %s %s %s %s', c.relname, seqstart, seqincrement, seqcycle)
        FROM pg_sequence JOIN pg_class c ON c.oid = seqrelid
        WHERE c.relnamespace = 'public'::regnamespace
    UNION ALL SELECT 'policy ' || polname || polrelid::regclass::text FROM pg_policy
    UNION ALL SELECT 'schema ' || coalesce(nspacl::text, '') FROM pg_namespace
        WHERE nspname = 'public'
    UNION ALL SELECT 'rev ' || version_num FROM alembic_version
) AS schema_items
"""


def _initialise_postgres(url: str) -> None:
    reset_postgres(url)
    init_database(Settings(database_url=url))
    engine = create_engine(url)
    with engine.connect() as connection:
        relations = dict(connection.execute(text(_RELATIONS)).all())
        _pristine[url] = (relations, connection.execute(text(_FINGERPRINT)).scalar_one())
    engine.dispose()


def empty_postgres(url: str) -> None:
    """Bring the worker's database back to `init_database`'s state, as cheaply as is safe."""
    if url not in _pristine:
        return _initialise_postgres(url)
    relations, fingerprint = _pristine[url]
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        present = dict(connection.execute(text(_RELATIONS)).all())
        added = [name for name in present if name not in relations]
        kinds = {"v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE", "f": "FOREIGN TABLE"}
        for name in added:
            kind = kinds.get(present[name], "TABLE")
            connection.execute(text(f'DROP {kind} IF EXISTS "{name}" CASCADE'))
        try:
            same = connection.execute(text(_FINGERPRINT)).scalar_one() == fingerprint
        except ProgrammingError:  # the test dropped one of the release's tables
            same = False
        if same:
            # DELETE, not TRUNCATE: a test leaves few rows, and TRUNCATE's new files cost
            # ten times as much. The release's tables have no foreign keys to order by.
            for name, kind in relations.items():
                if kind in ("r", "p") and name != "alembic_version":
                    connection.execute(text(f'DELETE FROM "{name}"'))
                elif kind == "S":
                    connection.execute(text(f'ALTER SEQUENCE "{name}" RESTART'))
    engine.dispose()
    if not same:
        _initialise_postgres(url)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    initialised = not INITIALISED_FIXTURES.isdisjoint(request.fixturenames)
    if request.param == "sqlite":
        path = tmp_path / "ledger.db"
        if initialised:
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_admin_url")
    if initialised:
        empty_postgres(url)
    else:
        reset_postgres(url)
    return url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url)


@pytest.fixture
def empty_ledger(settings: Settings) -> Iterator[IncomeLedger]:
    # `database_url` made it an initialised, empty database (INITIALISED_FIXTURES).
    ledger = build_ledger(settings)
    yield ledger
    ledger.close()


@pytest.fixture
def ledger(empty_ledger: IncomeLedger) -> IncomeLedger:
    ctx = CommandContext("test:setup")
    for fund in SAMPLE_FUNDS:
        empty_ledger.add_fund(fund, ctx)
    return empty_ledger


def cli_invoker(monkeypatch: pytest.MonkeyPatch, database_url: str, actor: str | None = None):
    """`run(*args, code=0)`: the CLI in-process on this database, asserting its exit code."""
    from typer.testing import CliRunner

    from income_ledger.cli import app

    monkeypatch.setenv("LEDGER_DATABASE_URL", database_url)
    if actor is not None:
        monkeypatch.setenv("LEDGER_ACTOR", actor)
    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result

    return run


@pytest.fixture
def officer() -> CommandContext:
    return CommandContext("officer:test")


def leave_a_gap(ledger: IncomeLedger) -> None:
    """A write refused because one of its events clashes with a stored one (optimistic
    concurrency). On PostgreSQL its rows had taken positions from the sequence, which a
    rollback does not give back: the positions skip them for good. (SQLite numbers rows
    as they commit: no gap.) Needs an event stored already."""
    (last,) = ledger.recorder.select_notifications(start=ledger.max_position(), limit=1)
    clash = StoredEvent(last.originator_id, last.originator_version, last.topic, last.state)
    fresh = StoredEvent(uuid4(), 1, last.topic, last.state)
    with pytest.raises(IntegrityError):
        ledger.recorder.insert_events([fresh, clash])


def stored_events(ledger: IncomeLedger, after: int = 0) -> int:
    """How many events the store holds after a position, counted (not a difference of
    positions, which gaps make larger)."""
    engine = ledger.recorder.datastore.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        return connection.execute(
            text("SELECT count(*) FROM ledger_events WHERE id > :after"), {"after": after}
        ).scalar_one()
