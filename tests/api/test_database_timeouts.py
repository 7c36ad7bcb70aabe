"""A database that answers but gives a statement up (PostgreSQL's statement_timeout or
lock_timeout, SQLite's busy timeout) is not called unreachable: the answer says what
happened and what to do. The waits are real: another connection holds every table's lock
(or SQLite's write lock) while the server's statement waits for it, under the short limits
an operator sets in LEDGER_DATABASE_URL (docs/operations.md, "Timeouts")."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from application.ledger import IncomeLedger
from income_ledger.settings import Settings
from tests.api.conftest import REFUND_LIMIT_PENCE, auth
from tests.domain.helpers import CT_REF

BODY = {"channel": "cash", "amount_pence": 3_300, "reference": CT_REF}
LIMIT_MS = 300


def with_limit(database_url: str, limit: str) -> str:
    """The URL as an operator would write it: PostgreSQL's limits as libpq `options`,
    SQLite's busy timeout (seconds) as the driver's `timeout`."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return url.update_query_dict({"timeout": str(LIMIT_MS / 1000)}).render_as_string()
    options = f"-c {limit}={LIMIT_MS}"
    return url.update_query_dict({"options": options}).render_as_string(hide_password=False)


@pytest.fixture(params=["statement_timeout", "lock_timeout"])
def limit(request: pytest.FixtureRequest, database_url: str) -> str:
    if database_url.startswith("sqlite") and request.param != "lock_timeout":
        pytest.skip("SQLite has no statement timeout: its busy timeout is the lock_timeout case")
    return request.param


@pytest.fixture
def settings(database_url: str, limit: str) -> Settings:
    return Settings(
        database_url=with_limit(database_url, limit),
        refund_approval_limit_pence=REFUND_LIMIT_PENCE,
    )


@contextmanager
def everything_locked(database_url: str) -> Iterator[None]:
    """Another session holds every table (PostgreSQL) or the write lock (SQLite)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        holder = sqlite3.connect(url.database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    engine = create_engine(database_url)
    with engine.connect() as connection:
        tables = connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).scalars()
        names = ", ".join(f'"{name}"' for name in tables)
        connection.execute(text(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE"))
        try:
            yield
        finally:
            connection.rollback()
    engine.dispose()


def receipts(ledger: IncomeLedger) -> int:
    return sum(type(e).__name__ == "Received" for _, e in ledger.read_events())


def test_a_statement_the_database_gives_up_is_not_called_unreachable(
    base_url, ledger, database_url, limit
) -> None:
    expected = "database_timeout" if limit == "statement_timeout" else "database_busy"
    said = "statement_timeout" if limit == "statement_timeout" else "lock"
    headers = auth("officer") | {"Idempotency-Key": "timeout-1"}
    with httpx.Client(base_url=base_url, timeout=30) as http:
        with everything_locked(database_url):
            command = http.post("/payments", json=BODY, headers=headers)
            # SQLite's readers never wait for its writer.
            queries = (
                []
                if database_url.startswith("sqlite")
                else [http.get("/balances/funds", headers=auth("reporting"))]
            )
        retried = http.post("/payments", json=BODY, headers=headers)
    for response in (command, *queries):
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "5"
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == expected, problem
        assert said in problem["detail"] and "nothing was saved" in problem["detail"]
        assert "could not be reached" not in problem["detail"]
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    assert receipts(ledger) == 1


def test_health_checks_the_database_gave_up_do_not_call_it_unreachable(
    base_url, database_url, limit
) -> None:
    """/health and /health/ready stay 503 (not alive, not ready), but an operator reading
    them during a lock (a rebuild's swap, a migration) is told that, not that the database
    is down."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite's readers never wait for its writer")
    expected = "timeout" if limit == "statement_timeout" else "busy"
    with httpx.Client(base_url=base_url, timeout=30) as http, everything_locked(database_url):
        alive, ready = http.get("/health"), http.get("/health/ready")
    for response in (alive, ready):
        assert response.status_code == 503, response.text
        assert response.json()["database"] == expected, response.text
    assert "unreachable" not in ready.json()["reasons"][0]
    assert ("statement_timeout" if expected == "timeout" else "lock") in ready.json()["reasons"][0]
