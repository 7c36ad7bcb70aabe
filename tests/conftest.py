"""Fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL comes from LEDGER_TEST_POSTGRES_URL (default: the local server with trust auth).
Each pytest-xdist worker gets a database of its own. Under CI=true an unreachable PostgreSQL
fails the run; elsewhere those tests skip, saying how to enable them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

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


def reset_postgres(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("postgres_admin_url")
    reset_postgres(url)
    return url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url)


@pytest.fixture
def empty_ledger(settings: Settings) -> Iterator[IncomeLedger]:
    init_database(settings)
    ledger = build_ledger(settings)
    yield ledger
    ledger.close()


@pytest.fixture
def ledger(empty_ledger: IncomeLedger) -> IncomeLedger:
    ctx = CommandContext("test:setup")
    for fund in SAMPLE_FUNDS:
        empty_ledger.add_fund(fund, ctx)
    return empty_ledger


@pytest.fixture
def officer() -> CommandContext:
    return CommandContext("officer:test")
