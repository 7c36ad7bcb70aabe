"""A transaction PostgreSQL rolls back to settle a clash with another one (a deadlock, a
serialization failure) is not called an outage: the database answered, nothing was saved,
and the same command again very likely succeeds. A command run with its stored response
(`run_once`) is run once more by itself; a clash that comes back is answered 503
`database_conflict`. The deadlocks are real: another session holds the event store's lock
while the server's command waits for it, then asks for a lock the command holds."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg2
import psycopg2.errors
import pytest
from sqlalchemy.engine import make_url

from application import event_store
from application.idempotency import idempotency_table
from application.ledger import CommandContext, IncomeLedger, RecordPayment
from application.outages import DatabaseUnavailable, Delay, delay_of
from tests.api.conftest import auth
from tests.domain.helpers import CT_REF

SUSPENSE_REFERENCE = "12345678"  # fails Council Tax's check digit: held in suspense
ALLOCATE = {
    "lines": [{"fund_code": "CT", "reference": CT_REF, "amount_pence": 8_000}],
    "reason": "caller said council tax",
}
WAIT_S = 20


@pytest.fixture(autouse=True)
def postgresql_only(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time: no deadlock, its waits are database_busy")


@contextmanager
def deadlocked(
    database_url: str,
    ledger: IncomeLedger,
    rounds: int,
    table: str | None = None,
    mode: str = "EXCLUSIVE",
) -> Iterator[list[str]]:
    """Deadlock the next `rounds` transactions that wait for `table`'s lock (by default the
    event store's, which every write takes).

    Another session takes that lock (in `mode`); when a transaction waits for it, the
    session asks for the other tables that transaction holds: each waits for the other. The
    session waits a minute before looking for a deadlock, the transaction the server's
    default second, so the server's transaction is the one PostgreSQL rolls back. Yields
    the list of what the session could not do (empty when every round deadlocked)."""
    url = make_url(database_url).set(drivername="postgresql")
    table = table or event_store.events_table_name(ledger.recorder)
    holder = psycopg2.connect(url.render_as_string(hide_password=False))
    cursor = holder.cursor()
    cursor.execute("SET deadlock_timeout = '60s'")
    cursor.execute(f'LOCK TABLE "{table}" IN {mode} MODE')
    failures: list[str] = []

    def clash() -> None:
        for round_ in range(rounds):
            waiting = _waiting_for(cursor, table)
            if waiting is None:
                failures.append(f"round {round_ + 1}: nothing waited for {table}")
                return
            # Not the event store itself: asking for more of a lock one holds while another
            # waits for it is a deadlock PostgreSQL finds at once, in the asker.
            tables = [name for name in _tables_held_by(cursor, waiting) if name != table]
            if not tables:
                failures.append(f"round {round_ + 1}: the waiting transaction holds no table")
                return
            cursor.execute("SAVEPOINT clash")
            names = ", ".join(f'"{name}"' for name in tables)
            cursor.execute(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
            # Let go of those tables (not `table`): the command's next attempt waits for
            # `table` again, holding them.
            cursor.execute("ROLLBACK TO SAVEPOINT clash")

    def clash_then_let_go() -> None:
        try:
            clash()
        finally:
            holder.rollback()

    thread = threading.Thread(target=clash_then_let_go)
    thread.start()
    try:
        yield failures
    finally:
        thread.join(timeout=WAIT_S * (rounds + 1))
        holder.close()


def _waiting_for(cursor, table: str) -> int | None:
    """The backend waiting for `table`'s lock, once one is."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        cursor.execute(
            "SELECT pid FROM pg_locks WHERE relation = %s::regclass AND NOT granted", (table,)
        )
        row = cursor.fetchone()
        if row is not None:
            return int(row[0])
        time.sleep(0.01)
    return None


def _tables_held_by(cursor, pid: int) -> list[str]:
    cursor.execute(
        "SELECT DISTINCT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE l.pid = %s AND l.granted AND c.relkind IN ('r', 'p') AND n.nspname = 'public'",
        (pid,),
    )
    return sorted(name for (name,) in cursor.fetchall())


@pytest.fixture
def in_suspense(ledger: IncomeLedger) -> str:
    outcome = ledger.record_payment(
        RecordPayment(channel="cheque", amount_pence=8_000, reference=SUSPENSE_REFERENCE),
        CommandContext("officer:officer"),
    )
    return str(outcome.payment_id)


def allocations(ledger: IncomeLedger) -> int:
    return sum(type(e).__name__ == "Allocated" for _, e in ledger.read_events())


def allocate_twice(
    base_url: str, ledger: IncomeLedger, database_url: str, payment_id: str, rounds: int
) -> tuple[httpx.Response, httpx.Response]:
    """POST the allocation under `rounds` deadlocks, then again with the same key."""
    headers = auth("officer") | {"Idempotency-Key": f"deadlock-{rounds}"}
    path = f"/payments/{payment_id}/allocations"
    with httpx.Client(base_url=base_url, timeout=60) as http:
        with deadlocked(database_url, ledger, rounds=rounds) as failures:
            first = http.post(path, json=ALLOCATE, headers=headers)
        again = http.post(path, json=ALLOCATE, headers=headers)
    assert not failures, failures
    return first, again


def test_a_command_rolled_back_by_a_deadlock_is_run_once_more_by_itself(
    base_url, ledger, database_url, in_suspense
) -> None:
    answer, replayed = allocate_twice(base_url, ledger, database_url, in_suspense, rounds=1)
    assert answer.status_code == 201, answer.text
    assert replayed.status_code == 201 and replayed.headers["Idempotent-Replayed"] == "true"
    assert allocations(ledger) == 1


def test_a_deadlock_that_comes_back_is_answered_database_conflict_not_unreachable(
    base_url, ledger, database_url, in_suspense
) -> None:
    answer, retried = allocate_twice(base_url, ledger, database_url, in_suspense, rounds=2)
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "1"
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["code"] == "database_conflict" and problem["retryable"] is True, problem
    assert "nothing was saved" in problem["detail"] and "deadlock" in problem["detail"]
    assert "could not be reached" not in problem["detail"]
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    assert allocations(ledger) == 1


@pytest.mark.parametrize("rounds", [1, 2])
def test_a_group_commit_rolled_back_by_a_deadlock_is_written_once_more(
    base_url, ledger, database_url, rounds, caplog
) -> None:
    """A receipt with an Idempotency-Key joins a group commit on PostgreSQL, its stored
    response in the group's statement, after the event store's lock: a session that lets
    it read stored responses but not add one (SHARE), then asks for the event store's lock,
    deadlocks the group. The writer writes the group once more; a deadlock that comes back
    is answered."""
    headers = auth("officer") | {"Idempotency-Key": f"group-deadlock-{rounds}"}
    body = {"channel": "cash", "amount_pence": 3_300, "reference": CT_REF}
    held = idempotency_table.name
    with httpx.Client(base_url=base_url, timeout=60) as http:
        with deadlocked(database_url, ledger, rounds, table=held, mode="SHARE") as failures:
            first = http.post("/payments", json=body, headers=headers)
        again = http.post("/payments", json=body, headers=headers)
    assert not failures, failures
    assert "rolled a group commit back" in caplog.text
    receipts = sum(type(e).__name__ == "Received" for _, e in ledger.read_events())
    assert receipts == 1
    if rounds == 1:
        assert first.status_code == 201, first.text
        assert again.headers.get("Idempotent-Replayed") == "true"
        return
    assert first.status_code == 503 and first.json()["code"] == "database_conflict", first.text
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers


def test_a_serialization_failure_is_a_conflict_and_says_nothing_was_saved(database_url) -> None:
    """Two SERIALIZABLE transactions each read what the other writes: the second to commit
    is rolled back (SQLSTATE 40001) at its COMMIT, a conflict like a deadlock, and nothing of
    it was saved even though it failed while committing."""
    url = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    first, second = psycopg2.connect(url), psycopg2.connect(url)
    try:
        with first.cursor() as setup:
            setup.execute("CREATE TABLE serial_clash (k int)")
        first.commit()
        for connection in (first, second):
            connection.set_session(isolation_level="SERIALIZABLE")
        a, b = first.cursor(), second.cursor()
        a.execute("SELECT count(*) FROM serial_clash WHERE k = 2")
        b.execute("SELECT count(*) FROM serial_clash WHERE k = 1")
        a.execute("INSERT INTO serial_clash VALUES (1)")
        b.execute("INSERT INTO serial_clash VALUES (2)")
        first.commit()
        with pytest.raises(psycopg2.errors.SerializationFailure) as raised:
            second.commit()
        with first.cursor() as check:
            check.execute("SELECT k FROM serial_clash")
            assert check.fetchall() == [(1,)]
    finally:
        first.rollback()
        first.set_session(isolation_level="READ COMMITTED")
        with first.cursor() as cleanup:
            cleanup.execute("DROP TABLE IF EXISTS serial_clash")
        first.commit()
        first.close()
        second.close()
    assert delay_of(raised.value) is Delay.CONFLICT
    during_commit = DatabaseUnavailable.of(raised.value, committing=True)
    assert during_commit.conflict and during_commit.saved_unknown is False
    assert "nothing was saved" in str(during_commit)


def new_fund(code: str) -> dict:
    return {
        "code": code,
        "name": f"Fund {code}",
        "cost_centre": "CC1",
        "ledger_code": "4000",
        "reference_rule": {"mask": "999999"},
    }


def test_a_fund_added_by_a_command_rolled_back_after_reading_it_is_not_kept(
    base_url, ledger, database_url
) -> None:
    """POST /funds reads the new fund back in its own transaction (for its response) before
    it stores the response: a deadlock on that insert, twice, rolls the fund back. The
    process must not keep the chart it read (the fund would show, and the chart event that
    later takes its version would never be read)."""
    headers = auth("supervisor") | {"Idempotency-Key": "fund-deadlock"}
    held = idempotency_table.name
    with httpx.Client(base_url=base_url, timeout=60) as http:
        assert http.get("/funds", headers=auth("officer")).status_code == 200  # chart held
        with deadlocked(database_url, ledger, 2, table=held, mode="SHARE") as failures:
            refused = http.post("/funds", json=new_fund("GHOST"), headers=headers)
        assert refused.status_code == 503, refused.text
        assert not failures, failures
        assert refused.json()["code"] == "database_conflict"
        assert http.get("/funds/GHOST", headers=auth("officer")).status_code == 404
        added = http.post("/funds", json=new_fund("REAL"), headers=auth("supervisor"))
        assert added.status_code == 201, added.text
        codes = [f["code"] for f in http.get("/funds", headers=auth("officer")).json()]
    assert "REAL" in codes and "GHOST" not in codes
