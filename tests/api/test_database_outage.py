"""A PostgreSQL outage answers 503 with Retry-After, and says only what is known of what was
saved. The outages are real: a server address where nothing listens, and the server's own
connection terminated by PostgreSQL (pg_terminate_backend) at the moment of the commit.
The shared PostgreSQL server itself is never stopped: other test runs use it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import sessionmaker

from api.services import Services
from application.ledger import IncomeLedger
from tests.api.conftest import auth
from tests.api.test_serve import free_port
from tests.domain.helpers import CT_REF

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
BODY = {"channel": "cash", "amount_pence": 3_300, "reference": CT_REF}


def receipts(ledger: IncomeLedger) -> int:
    return sum(type(e).__name__ == "Received" for _, e in ledger.read_events())


@contextmanager
def database_moved_to_a_closed_port(ledger: IncomeLedger, services: Services) -> Iterator[None]:
    """Point the server's connections at an address where no database listens, then back."""
    datastore = ledger.recorder.datastore  # type: ignore[attr-defined]
    engines = (datastore.engine, services.read_engine)
    nowhere = make_url(str(datastore.engine.url.render_as_string(hide_password=False)))
    nowhere = nowhere.set(port=free_port())
    datastore.engine = create_engine(nowhere, connect_args={"connect_timeout": 2})
    datastore.session_maker = sessionmaker(bind=datastore.engine)
    services.read_engine = create_engine(nowhere, connect_args={"connect_timeout": 2})
    try:
        yield
    finally:
        datastore.engine.dispose()
        services.read_engine.dispose()
        datastore.engine, services.read_engine = engines
        datastore.session_maker = sessionmaker(bind=datastore.engine)


def test_an_unreachable_database_answers_503_and_nothing_was_saved(
    base_url, ledger, services
) -> None:
    headers = auth("officer") | {"Idempotency-Key": "outage-1"}
    with httpx.Client(base_url=base_url, timeout=30) as http:
        with database_moved_to_a_closed_port(ledger, services):
            command = http.post("/payments", json=BODY, headers=headers)
            query = http.get("/balances/funds", headers=auth("reporting"))
        retried = http.post("/payments", json=BODY, headers=headers)
    for response in (command, query):
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "5"
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "database_unavailable"
        assert "nothing was saved" in response.json()["detail"]
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    assert receipts(ledger) == 1


@pytest.fixture
def connection_killed_at_commit(ledger: IncomeLedger, database_url: str) -> Iterator[None]:
    """PostgreSQL terminates the server's connection just before the first commit of a
    command that stores an idempotent response: the COMMIT never arrives, and the server
    cannot know whether it did."""
    datastore = ledger.recorder.datastore  # type: ignore[attr-defined]
    admin: Engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    killed = []

    def note_insert(connection, cursor, statement, parameters, context, executemany) -> None:
        # Alone, or inside the statement of a group commit.
        if "INSERT INTO REQUEST_IDEMPOTENCY" in statement.upper():
            connection.info["stores_response"] = True

    def kill(session) -> None:
        connection = session.connection()
        if not connection.info.pop("stores_response", False) or killed:
            return
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with admin.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
        killed.append(pid)

    event.listen(datastore.engine, "before_cursor_execute", note_insert)
    event.listen(datastore.session_maker, "before_commit", kill)
    yield
    event.remove(datastore.engine, "before_cursor_execute", note_insert)
    event.remove(datastore.session_maker, "before_commit", kill)
    admin.dispose()
    assert killed, "the connection was never terminated"


def test_a_connection_lost_at_commit_says_the_outcome_is_unknown_and_a_retry_is_safe(
    base_url, ledger, connection_killed_at_commit
) -> None:
    headers = auth("officer") | {"Idempotency-Key": "outage-2"}
    with httpx.Client(base_url=base_url, timeout=30) as http:
        lost = http.post("/payments", json=BODY, headers=headers)
        retried = http.post("/payments", json=BODY, headers=headers)
        again = http.post("/payments", json=BODY, headers=headers)
    assert lost.status_code == 503, lost.text
    assert lost.headers["Retry-After"] == "5"
    problem = lost.json()
    assert problem["code"] == "database_outcome_unknown" and problem["retryable"] is True
    assert "nothing was saved" not in problem["detail"]
    assert "may or may not have been saved" in problem["detail"]
    assert "same Idempotency-Key" in problem["detail"]
    assert retried.status_code == 201, retried.text
    assert again.json() == retried.json() and again.headers["Idempotent-Replayed"] == "true"
    assert receipts(ledger) == 1


def test_terminated_idle_connections_are_replaced_without_an_error(
    base_url, ledger, database_url
) -> None:
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with httpx.Client(base_url=base_url, timeout=30) as http:
        assert http.get("/funds", headers=auth("officer")).status_code == 200
        with admin.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        assert http.post("/payments", json=BODY, headers=auth("officer")).status_code == 201
    admin.dispose()
