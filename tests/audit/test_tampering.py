"""Tampering with the real event store by hand, on SQLite and PostgreSQL, and the chain
catching each change at its first position; and the chain kept exactly once beside the
read model."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from application.ledger import RecordPayment
from income_ledger.bootstrap import build_projection, stored_event_source
from projections.chain import ChainBroken, stored_seals, verify_chain
from projections.runner import ProjectionRunner
from tests.audit.conftest import execute
from tests.conftest import leave_a_gap, stored_events
from tests.domain.helpers import CT_REF, SUN_REF


def record(ledger, officer, count: int, tag: str) -> None:
    for n in range(count):
        reference = [CT_REF, SUN_REF, "JUNK"][n % 3]
        ledger.record_payment(
            RecordPayment("cash", 1_000 + n, reference, external_id=f"{tag}-{n}"), officer
        )


def verify(ledger, chain, seals=()):
    return verify_chain(
        chain.engine,
        stored_event_source(ledger),
        store_position=ledger.max_position(),
        seals=seals,
        page_size=7,
    )


def positions(chain, where: str = "") -> list[int]:
    with chain.engine.connect() as connection:
        return list(
            connection.execute(text(f"SELECT id FROM ledger_events {where} ORDER BY id")).scalars()
        )


@pytest.fixture
def chained(ledger, chain, officer):
    record(ledger, officer, 6, "a")
    leave_a_gap(ledger)  # PostgreSQL's positions skip numbers: the chain is whole all the same
    record(ledger, officer, 6, "b")
    chain.catch_up()
    report = verify(ledger, chain)
    assert report.ok and report.events_checked == stored_events(ledger)
    return chain


def test_an_altered_row_is_found_at_its_position(ledger, chained) -> None:
    target = positions(chained, "WHERE topic LIKE '%Received'")[5]
    with chained.engine.connect() as connection:
        state = connection.execute(
            text("SELECT state FROM ledger_events WHERE id = :id"), {"id": target}
        ).scalar_one()
    forged = bytes(state).replace(b'"amount_pence":', b'"amount_pence":9', 1)
    assert forged != bytes(state)
    execute(
        chained.engine, "UPDATE ledger_events SET state = :s WHERE id = :id", s=forged, id=target
    )
    report = verify(ledger, chained)
    assert not report.ok
    assert (report.first_mismatch.position, report.first_mismatch.kind) == (target, "altered")
    assert report.findings_count == 1


def test_a_deleted_row_is_found_at_its_position(ledger, chained) -> None:
    target = positions(chained)[7]
    execute(chained.engine, "DELETE FROM ledger_events WHERE id = :id", id=target)
    report = verify(ledger, chained)
    assert (report.first_mismatch.position, report.first_mismatch.kind) == (target, "missing")


def make_gap(chain) -> int:
    """A position with no event. PostgreSQL leaves these itself (a rolled-back insert takes
    a sequence number); SQLite never does, so there a row is removed before chaining (not
    the last: SQLite would give its position to the next event)."""
    if chain.engine.dialect.name == "postgresql":
        with chain.engine.begin() as connection:
            return connection.execute(
                text("SELECT nextval(pg_get_serial_sequence('ledger_events', 'id'))")
            ).scalar_one()
    gap = positions(chain)[-2]
    execute(chain.engine, "DELETE FROM ledger_events WHERE id = :id", id=gap)
    return gap


def test_a_row_inserted_by_hand_into_chained_history_is_found(ledger, chain, officer) -> None:
    record(ledger, officer, 4, "before")
    gap = make_gap(chain)
    record(ledger, officer, 4, "after")
    chain.catch_up()
    report = verify(ledger, chain)
    assert report.ok, "a gap in positions is not tampering"
    assert gap not in positions(chain) and gap < chain.position()
    execute(
        chain.engine,
        "INSERT INTO ledger_events (id, originator_id, originator_version, topic, state) "
        "SELECT :gap, originator_id, originator_version + 1000, topic, state "
        "FROM ledger_events WHERE id = :copied",
        gap=gap,
        copied=positions(chain)[0] + 2,
    )
    report = verify(ledger, chain)
    assert (report.first_mismatch.position, report.first_mismatch.kind) == (gap, "unexpected")


def test_the_chain_table_itself_cannot_be_edited_unnoticed(ledger, chained, officer) -> None:
    target = positions(chained)[3]
    execute(
        chained.engine,
        "UPDATE audit_chain SET link_sha256 = :link WHERE position = :p",
        link="0" * 64,
        p=target,
    )
    assert verify(ledger, chained).first_mismatch.position == target
    execute(chained.engine, "DELETE FROM audit_chain WHERE position = :p", p=chained.position())
    record(ledger, officer, 1, "later")
    with pytest.raises(ChainBroken, match="audit verify"):
        chained.catch_up()


def test_a_rewrite_of_events_and_chain_is_caught_by_the_published_seals(ledger, chained) -> None:
    with chained.engine.connect() as connection:
        published = stored_seals(connection)
    target = positions(chained)[4]
    execute(chained.engine, "DELETE FROM ledger_events WHERE id = :id", id=target)
    for table in ("audit_chain", "audit_seals"):
        execute(chained.engine, f"DELETE FROM {table}")
    execute(chained.engine, "DELETE FROM projection_tracking WHERE projection_name = 'audit_chain'")
    chained.catch_up()
    assert verify(ledger, chained).ok, "a consistent rewrite needs a seal from outside"
    report = verify(ledger, chained, seals=published)
    assert not report.ok and report.findings_count == 0
    assert [f.kind for f in report.seal_findings] == ["seal"]
    assert report.seal_findings[0].position == published[-1].last_position


def test_the_projection_runner_keeps_the_chain_beside_the_read_model(
    ledger, settings, chain, officer
) -> None:
    projection = build_projection(settings, ledger, page_size=50)
    runner = ProjectionRunner(projection, idle_wait_s=0.05, companions=[chain])
    thread = runner.start_thread()
    try:
        record(ledger, officer, 6, "live")
        deadline = time.monotonic() + 20
        while chain.position() < ledger.max_position() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop()
        thread.join(10)
        projection.engine.dispose()
    assert chain.position() == projection.position() == ledger.max_position()
    assert verify(ledger, chain).ok


def test_two_chainers_at_once_chain_every_event_once(ledger, chain, settings, officer) -> None:
    from income_ledger.bootstrap import build_audit_chain

    record(ledger, officer, 3, "first")
    chain.catch_up()  # the tracking row exists before they race
    record(ledger, officer, 30, "more")
    other = build_audit_chain(settings, ledger, page_size=7)
    errors: list[BaseException] = []

    def run(c) -> None:
        try:
            c.catch_up()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(c,)) for c in (chain, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    other.engine.dispose()
    assert not errors
    with chain.engine.connect() as connection:
        linked = connection.execute(text("SELECT count(*) FROM audit_chain")).scalar_one()
    assert linked == len(positions(chain)) and chain.position() == ledger.max_position()
    assert verify(ledger, chain).ok
