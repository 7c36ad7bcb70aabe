"""The read model against the write side, and its exactly-once machinery, on both backends."""

from __future__ import annotations

from collections import defaultdict

import pytest
from sqlalchemy import event, text

from application.ledger import RecordPayment
from income_ledger.bootstrap import event_source
from projections.maintenance import rebuild, verify
from projections.runner import Projection, ProjectionRunner, wait_for_position
from projections.schema import SUSPENSE_FUND
from tests.conftest import stored_events
from tests.domain.helpers import CT_REF
from tests.projections.conftest import random_workload


def rows(projection: Projection, sql: str) -> list:
    with projection.engine.connect() as connection:
        return list(connection.execute(text(sql)))


def test_the_read_model_agrees_with_the_payments_themselves(ledger, projection) -> None:
    random_workload(ledger, seed=1)
    projection.catch_up()
    assert projection.position() == ledger.max_position()
    views = {}
    for (payment_id,) in rows(projection, "SELECT payment_id FROM payments"):
        from uuid import UUID

        views[payment_id] = ledger.get_payment(UUID(payment_id))
    assert len(views) == 60
    for row in rows(projection, "SELECT * FROM payments"):
        view = views[row.payment_id]
        for column in (
            "status",
            "allocated_pence",
            "unallocated_pence",
            "refunded_pence",
            "reversed_pence",
            "amount_pence",
            "channel",
            "reference",
        ):
            assert getattr(row, column) == view[column], column
    expected_funds: dict[str, int] = defaultdict(int)
    for view in views.values():
        for line in view["allocations"]:
            expected_funds[line["fund_code"]] += line["amount_pence"]
    funds = {r.fund_code: r for r in rows(projection, "SELECT * FROM fund_balances")}
    assert {k: v.balance_pence for k, v in funds.items() if v.balance_pence} == {
        k: v for k, v in expected_funds.items() if v
    }
    for fund in funds.values():
        assert (
            fund.balance_pence
            == fund.net_pence + fund.vat_pence
            == (
                fund.allocated_pence
                + fund.transfers_in_pence
                - fund.transfers_out_pence
                - fund.refunds_pence
                - fund.reversals_pence
            )
        )
    suspense = {
        r.payment_id: r.amount_pence for r in rows(projection, "SELECT * FROM suspense_items")
    }
    assert suspense == {
        pid: v["unallocated_pence"] for pid, v in views.items() if v["unallocated_pence"]
    }
    (total,) = rows(projection, "SELECT sum(balance_pence) FROM account_balances")[0]
    assert total == 0
    (posted,) = rows(projection, "SELECT sum(amount_pence) FROM postings")[0]
    assert posted == 0
    (audited,) = rows(projection, "SELECT count(*) FROM audit_trail")[0]
    assert audited == stored_events(ledger)


def test_daily_takings_add_up_to_the_channel_totals(ledger, projection) -> None:
    random_workload(ledger, seed=2)
    projection.catch_up()
    takings = defaultdict(lambda: defaultdict(int))
    for row in rows(projection, "SELECT * FROM daily_takings"):
        for column in ("received_pence", "refunds_pence", "reversals_pence", "net_pence"):
            takings[row.channel][column] += getattr(row, column)
        assert row.net_pence == row.received_pence - row.refunds_pence - row.reversals_pence
    for row in rows(projection, "SELECT * FROM channel_totals"):
        assert takings[row.channel]["received_pence"] == row.received_pence
        assert takings[row.channel]["refunds_pence"] == row.refunds_pence
        assert takings[row.channel]["reversals_pence"] == row.reversals_pence


def test_a_receipt_lands_in_the_takings_of_its_fund_or_suspense(ledger, projection, officer):
    ledger.record_payment(RecordPayment("cash", 1_000, CT_REF), officer)
    ledger.record_payment(RecordPayment("cash", 250, "JUNK"), officer)
    projection.catch_up()
    by_fund = {r.fund_code: r for r in rows(projection, "SELECT * FROM daily_takings")}
    assert by_fund["CT"].receipts_count == 1 and by_fund["CT"].received_pence == 1_000
    assert by_fund[SUSPENSE_FUND].receipts_count == 1
    assert by_fund[SUSPENSE_FUND].received_pence == 250


def test_redelivered_events_change_nothing(ledger, projection) -> None:
    random_workload(ledger, seed=3, receipts=20)
    source = event_source(ledger)
    everything = list(source(0, 100_000))
    redelivering = Projection(projection.engine, lambda after, limit: everything, page_size=50)
    assert redelivering.catch_up() == len(everything)
    assert redelivering.catch_up() == 0
    assert verify(projection.engine, source).ok


def test_a_crash_mid_page_leaves_nothing_half_applied(ledger, projection, monkeypatch) -> None:
    random_workload(ledger, seed=4, receipts=20)
    projection.catch_up()
    position = projection.position()
    random_workload(ledger, seed=5, receipts=10)
    from projections import ledger_view

    original_write = ledger_view._State.write_carried

    def write_then_crash(self, connection, **kwargs) -> None:
        original_write(self, connection, **kwargs)
        raise RuntimeError("power cut")

    monkeypatch.setattr(ledger_view._State, "write_carried", write_then_crash)
    with pytest.raises(RuntimeError):
        projection.catch_up()
    assert projection.position() == position
    monkeypatch.setattr(ledger_view._State, "write_carried", original_write)
    projection.catch_up()
    report = verify(projection.engine, event_source(ledger))
    assert report.ok, report.differences


def test_verify_reports_a_tampered_read_model_and_rebuild_repairs_it(ledger, projection):
    random_workload(ledger, seed=6, receipts=20)
    projection.catch_up()
    with projection.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE fund_balances SET balance_pence = balance_pence + 1 WHERE fund_code = 'CT'"
            )
        )
        connection.execute(text("DELETE FROM postings WHERE posting_id = 3"))
    report = verify(projection.engine, event_source(ledger))
    assert not report.ok
    assert {d.table for d in report.differences} == {"fund_balances", "postings"}
    postings = next(d for d in report.differences if d.table == "postings")
    assert postings.missing_count == 1 and postings.unexpected_count == 0
    assert rebuild(projection.engine, event_source(ledger)) == ledger.max_position()
    assert verify(projection.engine, event_source(ledger)).ok
    assert projection.position() == ledger.max_position()
    projection.catch_up()
    assert rebuild(projection.engine, event_source(ledger)) == ledger.max_position()


def test_a_following_runner_offers_read_your_writes(ledger, projection, officer) -> None:
    runner = ProjectionRunner(projection, idle_wait_s=0.2)
    thread = runner.start_thread()
    try:
        outcome = ledger.record_payment(RecordPayment("cash", 777, CT_REF), officer)
        assert wait_for_position(projection.engine, outcome.position, timeout_s=10)
        (amount,) = rows(
            projection,
            f"SELECT amount_pence FROM payments WHERE payment_id = '{outcome.payment_id}'",
        )[0]
        assert amount == 777
        assert not wait_for_position(projection.engine, outcome.position + 1000, timeout_s=0.2)
    finally:
        runner.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_rebuild_after_one_that_stopped_part_way_builds_every_event(
    ledger, projection, monkeypatch
):
    """A rebuild stopped part way (Ctrl-C, a crash, a swap that timed out) left its own
    tracking row ahead of the scratch tables the next rebuild makes afresh: the next one
    starts again from position zero, never swapping in tables missing the first events."""
    from projections import maintenance

    random_workload(ledger, seed=12, receipts=20)
    projection.catch_up()

    def interrupt(*_args, **_kwargs) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:  # after every page, before the swap
        patched.setattr(maintenance, "_create_indexes", interrupt)
        with pytest.raises(KeyboardInterrupt):
            rebuild(projection.engine, event_source(ledger))
    assert verify(projection.engine, event_source(ledger)).ok  # the live tables untouched
    assert rebuild(projection.engine, event_source(ledger)) == ledger.max_position()
    report = verify(projection.engine, event_source(ledger))
    assert report.ok, report.differences
    with pytest.raises(KeyboardInterrupt):  # after its first page
        rebuild(projection.engine, event_source(ledger), page_size=10, progress=interrupt)
    assert verify(projection.engine, event_source(ledger)).ok  # the live tables untouched
    assert rebuild(projection.engine, event_source(ledger)) == ledger.max_position()
    report = verify(projection.engine, event_source(ledger))
    assert report.ok, report.differences


def test_a_page_of_new_receipts_reads_no_stored_payment_rows(ledger, projection, officer) -> None:
    """A receipt is its payment's first event, so a page that receives it has nothing stored
    to load for it; a later event of the same payment (an allocation) loads its rows."""
    projection.catch_up()
    reads: list[str] = []

    def note(_conn, _cursor, statement: str, *_args) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "payment" in statement.lower():
            reads.append(statement)

    event.listen(projection.engine, "before_cursor_execute", note)
    try:
        outcome = ledger.record_payment(RecordPayment("cash", 500, "JUNK"), officer)
        projection.catch_up()
        assert reads == []
        ledger.allocate(outcome.payment_id, [("CT", CT_REF, 200)], officer, "advice")
        projection.catch_up()
        assert reads, "an event of a stored payment loads its rows"
    finally:
        event.remove(projection.engine, "before_cursor_execute", note)
    (unallocated,) = rows(
        projection,
        f"SELECT unallocated_pence FROM payments WHERE payment_id = '{outcome.payment_id}'",
    )[0]
    assert unallocated == 300


def test_a_failure_moving_the_tracking_row_leaves_nothing_of_the_page(ledger, projection) -> None:
    # A small page's writes are sent in one round trip (bulk_write.one_round_trip) before
    # the tracking row moves: a failure once the move too has reached the database, before
    # COMMIT, takes them all back with the transaction, and the retry applies the page once.
    random_workload(ledger, seed=7, receipts=10)
    projection.catch_up()
    position = projection.position()
    figures = rows(projection, "SELECT * FROM fund_balances ORDER BY 1, 2")
    random_workload(ledger, seed=8, receipts=3)
    sent: list[str] = []

    def fail_the_move(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append(statement)
        if "UPDATE projection_tracking" in statement:
            raise RuntimeError("power cut before COMMIT")

    event.listen(projection.engine, "after_cursor_execute", fail_the_move)
    try:
        with pytest.raises(RuntimeError):
            projection.process_page()
    finally:
        event.remove(projection.engine, "after_cursor_execute", fail_the_move)
    assert any("UPDATE projection_tracking" in s for s in sent)
    assert projection.position() == position
    assert rows(projection, "SELECT * FROM fund_balances ORDER BY 1, 2") == figures
    projection.catch_up()
    report = verify(projection.engine, event_source(ledger))
    assert report.ok, report.differences
