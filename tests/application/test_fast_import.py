"""An import stores its receipts' events without building a payment per line (#10). Here the
same files are imported into two fresh databases: one through payments built by
`Payment.receive` (the aggregate path every other command uses), one as the import does it
(`IncomeLedger.new_receipt`: events and stored events made in one step, not
through the mapper). The stored events must be the same rows, timestamps aside, and the
audit chain, the projections and the payments read back must agree, on both backends."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import Engine, make_url

from application.import_rules import add_rule
from application.imports import _LineJob, get_import, import_file
from application.ledger import CommandContext, IncomeLedger, RecordPayment
from application.periods import close_period
from application.receipt_maker import ReceiptMaker
from domain.errors import PeriodClosed
from domain.limits import uk_day_start, uk_today
from domain.periods import uk_date
from domain.sample_chart import SAMPLE_FUNDS
from income_ledger.bootstrap import (
    build_audit_chain,
    build_ledger,
    build_projection,
    event_source,
    init_database,
    stored_event_source,
)
from income_ledger.settings import Settings
from projections.chain import verify_chain
from projections.maintenance import rebuild, verify
from projections.schema import LIVE
from tests.application.test_imports import allpay_file, allpay_line, csv_file
from tests.application.test_statement_imports import YESTERDAY, camt, entry
from tests.domain.helpers import CT_REF, CT_REF_2, HRA_REF, SUN_REF

IMPORTER = CommandContext("officer:importer")
SUPERVISOR = CommandContext("supervisor:rules")
# Set from each event's clock when it is made: the only field that differs by design.
RECORDING_TIME = {"timestamp", "recorded_at", "updated_at", "imported_at"}
CARD = "4111111111111111"


@pytest.fixture
def twin_settings(database_url: str, tmp_path) -> Iterator[Settings]:
    """A second fresh database on the same backend, initialised like the first."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        twin = tmp_path / "twin.db"
        shutil.copyfile(url.database, twin)
        yield Settings(database_url=f"sqlite:///{twin}")
        return
    name = f"{url.database}_fastimport_twin"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    twin_url = url.set(database=name).render_as_string(hide_password=False)
    init_database(Settings(database_url=twin_url))
    yield Settings(database_url=twin_url)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def by_aggregates(twin_settings: Settings, monkeypatch) -> Iterator[IncomeLedger]:
    """A ledger whose imports build each receipt as a payment and store its pending events."""
    ledger = build_ledger(twin_settings)
    for fund in SAMPLE_FUNDS:
        ledger.add_fund(fund, CommandContext("test:setup"))

    def built(command, ctx, chart) -> tuple:
        events = ledger.check_payment(command, ctx, chart).collect_events()
        return events, ledger.encoded_receipt(events)  # encoded by the mapper

    monkeypatch.setattr(ledger, "new_receipt", built)
    # Each line by `new_receipt` (the maker's own way of making plain lines left out).
    monkeypatch.setattr(
        ledger, "receipt_maker", lambda ctx, chart: ReceiptMaker(ledger, ctx, chart, fast=False)
    )
    yield ledger
    ledger.close()


def csv(*rows: str) -> dict[str, Any]:
    """A CSV file with its control totals, as import_file's keyword arguments."""
    pence = sum(int(row.split(",")[1].replace(".", "")) for row in rows)
    return {"content": csv_file(*rows), "expect_total_pence": pence, "expect_count": len(rows)}


def files() -> list[tuple[str, dict[str, Any]]]:
    day = (uk_today() - timedelta(days=1)).isoformat()
    return [
        (
            "allpay.txt",
            {
                "content": allpay_file(
                    allpay_line(CT_REF, "12.00"),  # allocated by the funds' reference rules
                    allpay_line(SUN_REF, "120.00"),  # a fund with VAT
                    allpay_line("NOSUCH", "3.00"),  # suspense: no fund takes it
                    allpay_line(f"CT{CT_REF_2}", "25.00"),  # an import rule rewrites and decides
                    allpay_line("BIG", "700.00"),  # an import rule holds it in suspense
                    allpay_line(CARD, "4.00"),  # a card number: masked and held
                    allpay_line(HRA_REF, "1.50", "C"),  # a cash adjustment: held
                    allpay_line(CT_REF, "12.00"),  # the same again: a receipt of its own
                )
            },
        ),
        (
            "day.csv",
            csv(
                f"cash,12.50,{CT_REF},{day},till-1,",
                f"cheque,7.50,{SUN_REF},{day},,SUN",
                f"card,9.99,WHATEVER,{day},card-7,",
            ),
        ),
        # till-1 is known already: that line records nothing and says so.
        ("again.csv", csv(f"cash,12.50,{CT_REF},{day},till-1,", f"cash,1.00,X,{day},,")),
        (
            "statement.xml",
            {
                "content": camt(
                    entry("25.00", ref="B1", day=YESTERDAY, text=CT_REF),
                    entry("10.00", ref="B2", family="RDDT", day=YESTERDAY, text=CT_REF),
                    entry("8.00", ref="B4", text="NO ACCOUNT", day=YESTERDAY),
                    entry("99.00", ref="B3", debit=True, family="ICDT", day=YESTERDAY),
                )
            },
        ),
        # A returned cheque takes back the first file's CT receipt; a new receipt beside it.
        (
            "returns.txt",
            {
                "content": allpay_file(
                    allpay_line(CT_REF, "12.00", "Q"), allpay_line(SUN_REF, "6.00")
                )
            },
        ),
    ]


def import_all(ledger: IncomeLedger) -> list[dict[str, Any]]:
    add_rule(
        ledger,
        {
            "name": "CT prefix",
            "reference_pattern": "CT[0-9]{8}",
            "fund_code": "CT",
            "strip_prefix": "CT",
        },
        SUPERVISOR,
        "CT files carry a prefix",
    )
    add_rule(
        ledger,
        {"name": "large", "min_amount_pence": 50_000, "suspense_reason": "check it"},
        SUPERVISOR,
        "large sums are checked",
        position=1,
    )
    outcomes = [import_file(ledger, ctx=IMPORTER, file_name=name, **file) for name, file in files()]
    assert all(outcome.recorded for outcome in outcomes)
    return [get_import(ledger, outcome.batch_id) for outcome in outcomes]


def stored_rows(ledger: IncomeLedger) -> list[tuple[Any, ...]]:
    """Every stored event: id, version, topic and state, with the times read from the clock
    as it was recorded blanked out (its timestamp; a reversal's effective time is now too).
    The files' own dates are yesterday's, so they are compared."""
    today = datetime.now(UTC).date().isoformat()
    clock = re.compile(rb'"_data_":"' + today.encode() + rb'T[^"]*"')
    rows = []
    for notification in ledger.recorder.select_notifications(start=1, limit=100_000):
        # The bytes themselves, not a re-encoding: key order and spacing must match too.
        blanked = clock.sub(b'"_data_":"now"', notification.state)
        assert b'"timestamp":{"_type_":"datetime_iso","_data_":"now"}' in blanked
        rows.append(
            (
                notification.originator_id,
                notification.originator_version,
                notification.topic,
                blanked,
            )
        )
    return rows


def read_model(settings: Settings, ledger: IncomeLedger) -> dict[str, list[tuple]]:
    """Every read-model table's rows, built as events come and then rebuilt (the same)."""
    projection = build_projection(settings, ledger)
    try:
        projection.catch_up()
        source = event_source(ledger)
        assert verify(projection.engine, source).ok
        caught_up = table_rows(projection.engine)
        assert rebuild(projection.engine, source) == ledger.max_position()
        assert table_rows(projection.engine) == caught_up
        return caught_up
    finally:
        projection.engine.dispose()


def table_rows(engine: Engine) -> dict[str, list[tuple]]:
    """Rows with times read from the clock blanked (posting ids are the database's own)."""
    tables = {}
    with engine.connect() as connection:
        for table in LIVE.tables:
            columns = [c for c in table.columns if c.name not in RECORDING_TIME | {"posting_id"}]
            rows = [tuple(map(from_clock, row)) for row in connection.execute(select(*columns))]
            tables[table.name] = sorted(rows, key=repr)
    return tables


def from_clock(value: Any) -> Any:
    now = datetime.now(UTC)
    return "now" if isinstance(value, datetime) and value.date() == now.date() else value


def chain_verifies(settings: Settings, ledger: IncomeLedger) -> bool:
    """The audit chain, caught up, links every stored event, each hashing to its link.

    Positions need not be consecutive (PostgreSQL leaves a gap where a refused write took
    some): the events checked are counted against the rows stored, not the last position."""
    chain = build_audit_chain(settings, ledger)
    try:
        chain.catch_up()
        store_position = ledger.max_position()
        report = verify_chain(
            chain.engine, stored_event_source(ledger), store_position=store_position
        )
    finally:
        chain.engine.dispose()
    stored = len(ledger.recorder.select_notifications(start=1, limit=1_000_000))
    return (
        report.ok
        and report.unchained_after is None
        and report.events_checked == report.links_checked == stored
    )


def without_recording_time(value: Any) -> Any:
    """A view with its recording times left out, and any time read from the clock (a
    reversal or note takes effect now) blanked."""
    if isinstance(value, dict):
        return {k: without_recording_time(v) for k, v in value.items() if k not in RECORDING_TIME}
    if isinstance(value, list):
        return [without_recording_time(v) for v in value]
    if isinstance(value, str) and value.startswith(f"{datetime.now(UTC).date().isoformat()}T"):
        return "now"
    return value


def test_imports_store_the_events_the_aggregates_would(
    ledger, settings, by_aggregates, twin_settings
) -> None:
    fast = import_all(ledger)
    built = import_all(by_aggregates)
    # The files cover what the import must get right: every outcome and status, VAT, rules.
    lines = [line for batch in fast for line in batch["lines"]]
    assert {line["outcome"] for line in lines} >= {"recorded", "known", "reversed"}
    assert {line["status"] for line in lines} >= {"allocated", "suspense", "reversed"}
    assert any(line["import_rule"] for line in lines)
    assert any(CARD[:4] in line["reference"] and "*" in line["reference"] for line in lines)

    fast_rows, built_rows = stored_rows(ledger), stored_rows(by_aggregates)
    assert len(fast_rows) == len(built_rows) > 40
    for fast_row, built_row in zip(fast_rows, built_rows, strict=True):
        assert fast_row == built_row
    assert without_recording_time(fast) == without_recording_time(built)
    payment_ids = {line["payment_id"] for line in lines if line["payment_id"]}
    for payment_id in payment_ids:
        assert without_recording_time(ledger.get_payment(payment_id)) == without_recording_time(
            by_aggregates.get_payment(payment_id)
        )
    assert read_model(settings, ledger) == read_model(twin_settings, by_aggregates)
    assert chain_verifies(settings, ledger) and chain_verifies(twin_settings, by_aggregates)


def test_a_line_dated_in_a_closed_day_is_recorded_now_its_date_kept(ledger) -> None:
    close_period(ledger, "day", YESTERDAY, SUPERVISOR, "cashed up")
    outcome = import_file(
        ledger, allpay_file(allpay_line(CT_REF, "12.00")), IMPORTER, file_name="late.txt"
    )
    (line,) = get_import(ledger, outcome.batch_id)["lines"]
    payment = ledger.get_payment(line["payment_id"])
    assert line["status"] == payment["status"] == "allocated"
    assert payment["received_at"].startswith(datetime.now(UTC).date().isoformat())
    assert payment["provider_details"]["relates_to_period"] == YESTERDAY.isoformat()
    assert payment["provider_details"]["originally_received_at"].startswith(YESTERDAY.isoformat())


def test_receipt_events_dated_in_a_closed_day_are_refused_when_saved(ledger) -> None:
    """A close between checking a file and saving it: the events meet the period gate."""
    late = RecordPayment("allpay", 1_200, CT_REF, received_at=uk_day_start(YESTERDAY))
    events = ledger.receipt_events(late, IMPORTER, ledger.chart())
    close_period(ledger, "day", YESTERDAY, SUPERVISOR, "cashed up")
    before = ledger.max_position()
    with pytest.raises(PeriodClosed), ledger.unit_of_work():
        ledger.save_encoded_receipts([ledger.encoded_receipt(events)])
    assert ledger.max_position() == before


def test_chain_verifies_counts_the_stored_events_not_the_last_position(ledger, settings) -> None:
    """A write refused by a clash leaves a gap in positions on PostgreSQL: the chain is still
    whole. An altered event is not, whatever the positions."""
    ledger.record_payment(RecordPayment("allpay", 1_000, CT_REF, external_id="gap-1"), IMPORTER)
    (last,) = ledger.recorder.select_notifications(start=ledger.max_position(), limit=1)
    clash = StoredEvent(last.originator_id, last.originator_version, last.topic, last.state)
    fresh = StoredEvent(uuid4(), 1, last.topic, last.state)
    with pytest.raises(IntegrityError):
        ledger.recorder.insert_events([fresh, clash])
    ledger.record_payment(RecordPayment("allpay", 2_000, CT_REF, external_id="gap-2"), IMPORTER)
    stored = ledger.recorder.select_notifications(start=1, limit=1_000)
    if settings.is_postgres:
        assert len(stored) < ledger.max_position()  # the gap this test is about
    assert chain_verifies(settings, ledger)

    engine = create_engine(settings.database_url)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE ledger_events SET state = :state WHERE id = :id"),
            {"state": stored[-1].state + b" ", "id": stored[-1].id},
        )
    engine.dispose()
    assert not chain_verifies(settings, ledger)


def test_a_files_late_check_keeps_the_two_times_of_a_clock_change_apart() -> None:
    """Asia/Jerusalem's two 01:30s of 26 October 2025 (clocks back, as the UK's the same
    night) are one datetime to ==, but fall on two UK days (25th and 26th): red when the
    file's late check kept its answers by the datetime alone (the second line got the
    first's answer)."""
    closed = date(2025, 10, 25)
    periods = SimpleNamespace(close_of=lambda day: "closed" if day == closed else None)
    first = datetime(2025, 10, 26, 1, 30, tzinfo=ZoneInfo("Asia/Jerusalem"))
    second = first.replace(fold=1)
    assert first == second
    assert (uk_date(first), uk_date(second)) == (closed, date(2025, 10, 26))
    job = _LineJob(None, [], "", None, periods, None, None)  # type: ignore[arg-type]
    assert [job._late(first), job._late(second)] == [True, False]
    job = _LineJob(None, [], "", None, periods, None, None)  # type: ignore[arg-type]
    assert [job._late(second), job._late(first)] == [False, True]
