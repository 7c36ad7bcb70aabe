"""Importing a day's files, on SQLite and PostgreSQL: whole files or nothing, once each.

The real Allpay samples are read from ../shared/realdata/statements (never copied here);
every other case uses a small file written by these tests.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy.event

from application import event_store
from application.imports import get_import, import_file, list_imports, reverse_import
from application.ledger import CommandContext, IncomeLedger, RecordPayment
from domain.errors import (
    ImportBatchNotFound,
    ImportRefused,
    InvalidRequest,
    LedgerError,
    NothingToReverse,
)
from domain.imports import line_external_id
from domain.limits import UK, uk_today
from domain.postings import postings_for
from income_ledger.bootstrap import build_ledger
from income_ledger.settings import Settings
from tests.application.test_concurrency import _race
from tests.domain.helpers import CT_REF, CT_REF_2, SUN_REF, references_unfolded

STATEMENTS = Path(
    os.environ.get(
        "LEDGER_TEST_STATEMENT_SAMPLES",
        Path(__file__).resolve().parents[3] / "shared" / "realdata" / "statements",
    )
)
needs_samples = pytest.mark.skipif(
    not (STATEMENTS / "allpay").is_dir(),
    reason=f"real statement samples not found at {STATEMENTS}: set LEDGER_TEST_STATEMENT_SAMPLES",
)
TWO_RECORDS = "allpay/localgovims_allpay_two_records.txt"
TOTALS_MISMATCH = "allpay/localgovims_allpay_totals_mismatch.txt"
DAY = (uk_today() - timedelta(days=1)).strftime("%d/%m/%Y")


def allpay_line(
    reference: str, amount: str, payment_type: str = "P", day: str = DAY, source: str = "335610"
) -> str:
    """One Allpay detail line in the fixed-width layout (columns as in the README)."""
    return f"{source:>7}{reference:<16}{amount:>9}{payment_type}{day}"


def allpay_file(*details: str, total: str | None = None, count: int | None = None) -> bytes:
    """Details, a blank line and the two trailers (totals computed unless given)."""
    if total is None:
        pence = sum(int(line[23:32].strip().replace(".", "")) for line in details)
        total = f"{pence // 100}.{pence % 100:02d}"
    count = count if count is not None else len(details)
    trailer = [
        f"Total Amount Updated onto System: {total:>17}",
        f"Total Transactions updated onto System: {count:>17}",
    ]
    return "\r\n".join([*details, "", *trailer, ""]).encode()


def csv_file(*rows: str) -> bytes:
    return "\n".join(
        ["channel,amount,reference,received_date,external_id,fund_code", *rows]
    ).encode()


@pytest.fixture
def importer() -> CommandContext:
    return CommandContext("officer:importer")


def refusal(ledger: IncomeLedger, content: bytes, ctx: CommandContext, **kwargs) -> ImportRefused:
    before = ledger.max_position()
    with pytest.raises(ImportRefused) as caught:
        import_file(ledger, content, ctx, file_name="bad.txt", **kwargs)
    assert ledger.max_position() == before, "a refused file stored something"
    return caught.value


@needs_samples
def test_the_real_two_record_file_imports_two_receipts_of_120_pounds(ledger, importer) -> None:
    content = (STATEMENTS / TWO_RECORDS).read_bytes()
    outcome = import_file(ledger, content, importer, file_name="be0630.txt", file_format="allpay")
    batch = outcome.batch
    assert outcome.recorded and outcome.position == ledger.max_position()
    assert batch["receipts_count"] == 2 and batch["receipts_pence"] == 12_000
    assert batch["control_total_pence"] == 12_000 and batch["control_count"] == 2
    assert batch["imported_by"] == "officer:importer" and batch["file_name"] == "be0630.txt"
    lines = get_import(ledger, outcome.batch_id)["lines"]
    assert [line["line"] for line in lines] == [1, 2]
    payment = ledger.get_payment(lines[0]["payment_id"])
    # PayPoint (type T), dated 30/06/2022 UK, reference kept whole; no sample fund takes it.
    assert payment["channel"] == "paypoint" and payment["amount_pence"] == 6_000
    assert payment["received_at"] == "2022-06-29T23:00:00+00:00"
    assert payment["reference"] == "7000669297" and payment["status"] == "suspense"
    assert payment["provider_details"]["payment_type"] == "T"
    assert payment["provider_details"]["source_code"] == "335610"


@needs_samples
def test_the_real_totals_mismatch_file_is_refused_with_the_reason(ledger, importer) -> None:
    content = (STATEMENTS / TOTALS_MISMATCH).read_bytes()
    error = refusal(ledger, content, importer, file_format="allpay")
    assert "trailer total 419.00 does not match the lines, which add up to 60.00" in error.message
    assert "no 'Total Transactions updated onto System:' line" in error.message
    assert list_imports(ledger) == []


def test_lines_find_their_fund_or_wait_in_suspense(ledger, importer) -> None:
    content = allpay_file(
        allpay_line(CT_REF, "25.00", "P"),
        allpay_line("BERN" + CT_REF_2, "10.50", "N"),
        allpay_line("NOSUCHREF", "1.00", "Z"),
        allpay_line("ADJ", "3.00", "C"),
    )
    outcome = import_file(ledger, content, importer, file_name="be.txt")
    lines = get_import(ledger, outcome.batch_id)["lines"]
    payments = [ledger.get_payment(line["payment_id"]) for line in lines]
    assert [p["channel"] for p in payments] == ["allpay", "telephone", "paypoint", "allpay"]
    assert [p["status"] for p in payments] == ["allocated", "allocated", "suspense", "suspense"]
    # BERN is a prefix, not part of the reference.
    assert payments[1]["allocations"][0]["reference"] == CT_REF_2
    assert payments[3]["suspense_reason"] == "cash_adjustment"
    assert outcome.batch["receipts_pence"] == 3_950


def test_the_same_file_twice_records_nothing_and_says_so(ledger, importer) -> None:
    content = allpay_file(allpay_line(CT_REF, "25.00"))
    first = import_file(ledger, content, importer, file_name="monday.txt")
    position = ledger.max_position()
    again = import_file(ledger, content, CommandContext("officer:other"), file_name="copy.txt")
    assert not again.recorded and again.position is None
    assert again.batch_id == first.batch_id and again.batch["file_name"] == "monday.txt"
    assert ledger.max_position() == position


def test_every_bad_line_is_named_and_nothing_is_stored(ledger, importer) -> None:
    content = allpay_file(
        allpay_line(CT_REF, "25.00"),
        allpay_line(CT_REF, "25.00")[:30],
        allpay_line(CT_REF, "25.00", day="31/02/2026"),
        allpay_line(CT_REF, "2x.00"),
        allpay_line(CT_REF, "25.00", payment_type="X"),
        allpay_line(CT_REF, "25.00", day="01/01/1999"),
        allpay_line("12\x0034", "25.00"),
        total="1.00",
    )
    problems = {p.line_number: p.reason for p in refusal(ledger, content, importer).problems}
    assert "at least 43 characters, this one has 30" in problems[2]
    assert "'31/02/2026' (columns 34-43) is not a date" in problems[3]
    assert "'2x.00'" in problems[4]
    assert "payment type 'X'" in problems[5]
    assert "2000" in problems[6]
    assert "control characters" in problems[7]
    assert 1 not in problems and 0 not in problems  # totals are not checked over bad lines


def test_a_card_number_as_reference_is_masked_and_held_not_refused(ledger, importer) -> None:
    outcome = import_file(
        ledger, allpay_file(allpay_line("4111111111111111", "9.00")), importer, file_name="c"
    )
    payment = ledger.get_payment(get_import(ledger, outcome.batch_id)["lines"][0]["payment_id"])
    assert payment["reference"] == "411111******1111"
    assert payment["status"] == "suspense" and payment["suspense_reason"] == "unusable_reference"


def test_a_future_date_and_a_missing_trailer_are_refused(ledger, importer) -> None:
    tomorrow = (uk_today() + timedelta(days=2)).strftime("%d/%m/%Y")
    error = refusal(ledger, allpay_file(allpay_line(CT_REF, "1.00", day=tomorrow)), importer)
    assert error.problems[0].line_number == 1
    # Said as the file says it, a day; not the UTC moment the day starts at.
    day = (uk_today() + timedelta(days=2)).isoformat()
    assert error.problems[0].reason == (
        f"the date {day} is later than today ({uk_today().isoformat()}, UK): a file lists "
        "money already received; give the UK day it was received, from 2000-01-01 to today"
    )
    no_trailer = (allpay_line(CT_REF, "1.00") + "\r\n").encode()
    error = refusal(ledger, no_trailer, importer)
    assert {p.line_number for p in error.problems} == {0}
    assert "Total Amount" in error.message and "Total Transactions" in error.message


@pytest.mark.parametrize(
    "now",
    [datetime(2026, 7, 15, 23, 57, tzinfo=UK), datetime(2026, 11, 25, 23, 57, tzinfo=UK)],
    ids=["BST", "GMT"],
)
def test_a_file_dated_tomorrow_is_refused_three_minutes_before_midnight(
    ledger, importer, now
) -> None:
    """Tomorrow's UK day starts in three minutes, within the clock skew a moment is
    allowed: the file was taken, its money counted a day early. A date is not a moment."""
    tomorrow = now.date() + timedelta(days=1)
    for content, totals in (
        (allpay_file(allpay_line(CT_REF, "1.00", day=tomorrow.strftime("%d/%m/%Y"))), {}),
        (
            csv_file(f"cash,1.00,{CT_REF},{tomorrow.isoformat()},,"),
            {"expect_total_pence": 100, "expect_count": 1},
        ),
    ):
        error = refusal(ledger, content, importer, now=now, **totals)
        assert f"the date {tomorrow} is later than today ({now.date()}, UK)" in error.message
    today = allpay_file(allpay_line(CT_REF, "1.00", day=now.strftime("%d/%m/%Y")))
    assert import_file(ledger, today, importer, file_name="today", now=now).recorded


def test_trailers_right_after_the_details_are_read_as_trailers(ledger, importer) -> None:
    content = allpay_file(allpay_line(CT_REF, "3.00"), allpay_line(SUN_REF, "4.00"))
    without_blank_line = content.replace(b"\r\n\r\n", b"\r\n")
    outcome = import_file(ledger, without_blank_line, importer, file_name="tight")
    assert outcome.batch["receipts_pence"] == 700 and outcome.batch["line_count"] == 4


def test_a_file_over_the_line_limit_is_refused_for_its_size(ledger, importer, monkeypatch):
    monkeypatch.setattr("domain.imports.MAX_IMPORT_LINES", 2)
    monkeypatch.setattr("application.imports.MAX_IMPORT_LINES", 2)
    lines = [allpay_line(CT_REF, "1.00") for _ in range(3)]
    error = refusal(ledger, allpay_file(*lines), importer)
    assert [p.reason for p in error.problems] == ["a file holds at most 2 money lines; split it"]


def test_a_count_that_does_not_match_is_refused(ledger, importer) -> None:
    error = refusal(ledger, allpay_file(allpay_line(CT_REF, "1.00"), count=3), importer)
    assert "trailer count 3 does not match the 1 money lines" in error.message


def test_a_returned_cheque_reverses_the_receipt_it_takes_back(ledger, importer) -> None:
    paid = import_file(ledger, allpay_file(allpay_line(CT_REF, "40.00")), importer, file_name="a")
    original = get_import(ledger, paid.batch_id)["lines"][0]["payment_id"]
    returned = import_file(
        ledger,
        allpay_file(allpay_line(CT_REF, "40.00", "Q"), allpay_line(SUN_REF, "5.00", "P")),
        importer,
        file_name="b",
    )
    assert returned.batch["returned_cheques_count"] == 1 and returned.batch["receipts_count"] == 1
    payment = ledger.get_payment(original)
    assert payment["status"] == "reversed" and payment["reversed_pence"] == 4_000
    assert payment["history"][-1]["details"]["kind"] == "returned_cheque"
    # Nothing left to take back: a second returned cheque for it refuses its file.
    error = refusal(ledger, allpay_file(allpay_line(CT_REF, "40.00", "Q")), importer)
    assert "matches no earlier imported receipt" in error.problems[0].reason


def test_a_file_of_new_receipts_is_saved_without_asking_which_are_known(
    ledger, importer, monkeypatch
) -> None:
    """A file's receipts are new: asking first which of 100,000 are known took the importing
    process 0.5-0.7 s on SQLite (issue #10). The events table refuses a known one."""

    def asked(ids):
        raise AssertionError("asked which receipts are known")

    monkeypatch.setattr(ledger, "_known_receipts", asked)
    content = allpay_file(allpay_line(CT_REF, "40.00"), allpay_line("NOSUCH", "5.00"))
    outcome = import_file(ledger, content, importer, file_name="new.txt")
    assert outcome.recorded and outcome.batch["receipts_count"] == 2


def test_a_receipt_found_known_on_saving_is_skipped_and_the_rest_saved_once(
    ledger, importer
) -> None:
    """The file's save refused for a receipt recorded already (here by hand, under the id
    the file's line makes) is saved again skipping it: that line says so, the returned
    cheque beside it reverses its receipt once, and the batch is recorded once."""
    paid = import_file(ledger, allpay_file(allpay_line(CT_REF, "40.00")), importer, file_name="a")
    original = get_import(ledger, paid.batch_id)["lines"][0]["payment_id"]
    content = allpay_file(allpay_line(CT_REF, "40.00", "Q"), allpay_line(SUN_REF, "5.00"))
    external_id = line_external_id(hashlib.sha256(content).hexdigest(), 2)
    known = ledger.record_payment(
        RecordPayment("allpay", 500, SUN_REF, external_id=external_id), importer
    )
    before = ledger.max_position()
    outcome = import_file(ledger, content, importer, file_name="b")
    lines = get_import(ledger, outcome.batch_id)["lines"]
    assert [(line["outcome"], line["payment_id"]) for line in lines] == [
        ("reversed", original),
        ("known", str(known.payment_id)),
    ]
    assert outcome.batch["receipts_count"] == 0 and outcome.batch["returned_cheques_count"] == 1
    history = ledger.get_payment(original)["history"]
    assert [entry["details"].get("kind") for entry in history].count("returned_cheque") == 1
    # The batch, its file's content claim and the reversal.
    assert len(ledger.recorder.select_notifications(start=before + 1, limit=100)) == 3
    assert ledger.get_payment(str(known.payment_id))["version"] == known.payment["version"]


def test_a_csv_file_with_its_control_totals(ledger, importer) -> None:
    day = (uk_today() - timedelta(days=1)).isoformat()
    content = csv_file(
        f"cash,12.50,{CT_REF},{day},till-1,",
        f"cheque,7.50,{SUN_REF},{day},,SUN",
    )
    outcome = import_file(
        ledger, content, importer, file_name="day.csv", expect_total_pence=2_000, expect_count=2
    )
    assert outcome.batch["file_format"] == "csv" and outcome.batch["receipts_pence"] == 2_000
    lines = get_import(ledger, outcome.batch_id)["lines"]
    first = ledger.get_payment(lines[0]["payment_id"])
    assert first["external_id"] == "till-1" and first["status"] == "allocated"
    with pytest.raises(InvalidRequest, match="expected total and count"):
        import_file(ledger, content.replace(b"till-1", b"till-2"), importer, file_name="x.csv")


def test_csv_rows_are_refused_whole_with_line_numbers(ledger, importer) -> None:
    day = (uk_today() - timedelta(days=1)).isoformat()
    content = csv_file(
        f"cash,12.50,{CT_REF},{day},a,",
        f"bitcoin,1.00,{CT_REF},{day},b,",
        f"cash,1.005,{CT_REF},{day},c,",
        f"cash,1.00,{CT_REF},31/03/2026,d,",
        f"cash,1.00,{CT_REF},{day},a,",
        "cash,1.00",
        f"cash,1.00,{CT_REF},{day},e,C\x00T",
    )
    error = refusal(ledger, content, importer, expect_total_pence=1, expect_count=1)
    problems = {p.line_number: p.reason for p in error.problems}
    assert set(problems) == {3, 4, 5, 6, 7, 8}
    assert "fund_code contains control characters" in problems[8]
    assert "unknown channel 'bitcoin'" in problems[3] and "repeats line 2" in problems[6]
    wrong_total = refusal(
        ledger,
        csv_file(f"cash,1.00,{CT_REF},{day},,"),
        importer,
        expect_total_pence=200,
        expect_count=1,
    )
    assert "expected total 2.00 does not match" in wrong_total.message


def test_a_whole_import_is_reversed_once_leaving_history(ledger, importer) -> None:
    content = allpay_file(allpay_line(CT_REF, "25.00"), allpay_line("NOSUCH", "5.00"))
    outcome = import_file(ledger, content, importer, file_name="wrong-day.txt")
    first, second = get_import(ledger, outcome.batch_id)["lines"]
    ledger.refund(second["payment_id"], 500, importer, "paid twice")
    supervisor = CommandContext("supervisor:boss")
    reversed_ = reverse_import(ledger, outcome.batch_id, supervisor, "wrong day's file")
    assert reversed_.batch["reversed"] and reversed_.batch["reversed_by"] == "supervisor:boss"
    payment = ledger.get_payment(first["payment_id"])
    assert payment["status"] == "reversed" and payment["reversed_pence"] == 2_500
    assert payment["history"][-1]["details"]["kind"] == "import_reversed"
    assert ledger.get_payment(second["payment_id"])["status"] == "refunded"
    with pytest.raises(NothingToReverse, match="already reversed by supervisor:boss"):
        reverse_import(ledger, outcome.batch_id, supervisor, "again")
    with pytest.raises(ImportBatchNotFound):
        reverse_import(ledger, first["payment_id"], supervisor, "not a batch")


def test_imports_are_listed_newest_first_and_their_events_post_nothing(ledger, importer) -> None:
    import_file(ledger, allpay_file(allpay_line(CT_REF, "1.00")), importer, file_name="one")
    import_file(ledger, allpay_file(allpay_line(CT_REF, "2.00")), importer, file_name="two")
    assert [b["file_name"] for b in list_imports(ledger)] == ["two", "one"]
    events = [event for _, event in ledger.read_events()]
    batch_events = [e for e in events if type(e).__qualname__.startswith("ImportBatch")]
    assert len(batch_events) == 2 and all(postings_for(e) == () for e in batch_events)
    assert sum(p.amount_pence for e in events for p in postings_for(e)) == 0


def test_a_file_dated_today_is_accepted(ledger, importer) -> None:
    today = uk_today().strftime("%d/%m/%Y")
    outcome = import_file(
        ledger, allpay_file(allpay_line(CT_REF, "1.00", day=today)), importer, file_name="t"
    )
    assert outcome.recorded


def _import_in_a_process(barrier, url: str, content: bytes) -> str:
    ledger = build_ledger(Settings(database_url=url))
    try:
        barrier.wait()
        outcome = import_file(ledger, content, CommandContext("officer:race"), file_name="race")
        return "recorded" if outcome.recorded else "already_imported"
    except LedgerError as error:
        return error.code
    finally:
        ledger.close()


def test_racing_imports_of_one_file_record_it_once(ledger, settings) -> None:
    content = allpay_file(allpay_line(CT_REF, "11.00"), allpay_line("NOSUCH", "2.00"))
    results = Counter(_race(_import_in_a_process, [(settings.database_url, content)] * 3))
    assert results["recorded"] == 1, results
    assert results["recorded"] + results["already_imported"] + results["concurrent_update"] == 3
    events = [event for _, event in ledger.read_events()]
    assert sum(type(e).__name__ == "Received" for e in events) == 2
    assert sum(type(e).__name__ == "Imported" for e in events) == 1


# Lines enough that a file's receipts go in by COPY on PostgreSQL (income_ledger.event_store
# COPY_FROM_EVENTS), so that a refused COPY is rolled back whole too.
RACING_LINES = 150


def _csv_of(ids: range) -> tuple[bytes, int, int]:
    """A CSV file of 1.00 receipts with its own ids, its total and its count."""
    day = (uk_today() - timedelta(days=1)).isoformat()
    rows = [f"cash,1.00,{CT_REF},{day},till-{n}," for n in ids]
    return csv_file(*rows), 100 * len(rows), len(rows)


def _import_till(ledger, importer, content: bytes, total: int, count: int):
    """The racing tests' till CSV, imported with its totals."""
    return import_file(
        ledger,
        content,
        importer,
        file_name="till.csv",
        expect_total_pence=total,
        expect_count=count,
    )


def _import_csv_in_a_process(barrier, url: str, content: bytes, total: int, count: int) -> str:
    ledger = build_ledger(Settings(database_url=url))
    try:
        barrier.wait()
        outcome = _import_till(ledger, CommandContext("officer:race"), content, total, count)
        return "recorded" if outcome.recorded else "already_imported"
    except LedgerError as error:
        return error.code
    finally:
        ledger.close()


def test_racing_imports_of_overlapping_files_record_both_and_each_receipt_once(
    ledger, settings
) -> None:
    """Two till files sharing half their ids, imported at once: the one saved second finds
    the shared receipts known as it saves (fc3f23a's retry), and is recorded with them
    marked so, not refused as a concurrent update (as before fc3f23a, which asked first,
    before the other's commit)."""
    first, second = (
        _csv_of(range(RACING_LINES)),
        _csv_of(range(RACING_LINES // 2, RACING_LINES * 3 // 2)),
    )
    url = settings.database_url
    results = _race(_import_csv_in_a_process, [(url, *first), (url, *second)])
    assert results == ["recorded", "recorded"], results
    events = [event for _, event in ledger.read_events()]
    assert sum(type(e).__name__ == "Received" for e in events) == RACING_LINES * 3 // 2
    batches = list_imports(ledger)
    assert len(batches) == 2
    outcomes = Counter(
        line["outcome"]
        for batch in batches
        for line in get_import(ledger, batch["batch_id"])["lines"]
    )
    assert outcomes == {"recorded": RACING_LINES * 3 // 2, "known": RACING_LINES // 2}


def test_threads_importing_one_file_at_once_record_it_once(ledger, importer) -> None:
    """As the API's threads share one ledger: one records the file, the others are told it
    was imported before; nothing partial (the losers' refused saves roll back whole)."""
    content, total, count = _csv_of(range(RACING_LINES))
    barrier = threading.Barrier(3)
    results: list[str] = []

    def run() -> None:
        barrier.wait()
        try:
            outcome = _import_till(ledger, importer, content, total, count)
            results.append("recorded" if outcome.recorded else "already_imported")
        except LedgerError as error:
            results.append(error.code)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert Counter(results) == {"recorded": 1, "already_imported": 2}, results
    events = [event for _, event in ledger.read_events()]
    assert sum(type(e).__name__ == "Received" for e in events) == RACING_LINES
    assert sum(type(e).__name__ == "Imported" for e in events) == 1


def test_a_known_receipt_amid_a_large_file_leaves_nothing_of_the_refused_save(
    ledger, importer
) -> None:
    """The receipt known amid the file refuses the first save after the lines before it went
    in (by COPY on PostgreSQL, one executemany on SQLite): all of them roll back, and the save
    again records each of the others once."""
    content, total, count = _csv_of(range(RACING_LINES))
    known = ledger.record_payment(
        RecordPayment("cash", 100, CT_REF, external_id=f"till-{RACING_LINES // 2}"), importer
    )
    outcome = _import_till(ledger, importer, content, total, count)
    lines = get_import(ledger, outcome.batch_id)["lines"]
    assert [line["line"] for line in lines if line["outcome"] == "known"] == [RACING_LINES // 2 + 2]
    assert lines[RACING_LINES // 2]["payment_id"] == str(known.payment_id)
    assert outcome.batch["receipts_count"] == RACING_LINES - 1
    events = [event for _, event in ledger.read_events()]
    assert sum(type(e).__name__ == "Received" for e in events) == RACING_LINES


def old_import(ledger, lines: list[dict]) -> str:
    """An import recorded before its lines kept `fund_code`: its event as it was stored."""
    from uuid import uuid4

    from domain.imports import ImportBatch

    batch = ImportBatch._create(
        ImportBatch.Imported,
        id=uuid4(),
        file_name="old.csv",
        file_format="csv",
        sha256="0" * 64,
        line_count=len(lines) + 1,
        control_total_pence=sum(line["amount_pence"] for line in lines),
        control_count=len(lines),
        lines=lines,
        actor="officer:then",
    )
    ledger.save(batch)
    return str(batch.id)


def test_an_old_import_line_shows_the_fund_its_receipt_was_allocated_to_on_arrival(ledger):
    from uuid import UUID

    from application.ledger import RecordPayment

    ctx = CommandContext("officer:then")
    allocated = ledger.record_payment(RecordPayment("cash", 1_234, CT_REF), ctx).payment_id
    waiting = ledger.record_payment(RecordPayment("cash", 500, "UNKNOWN"), ctx).payment_id
    # An officer allocates the second later: not the import's doing, so no fund of the line.
    ledger.allocate(UUID(str(waiting)), [("CT", CT_REF, 500)], ctx, "advice came")
    stored = [
        {
            "line": number,
            "kind": "receipt",
            "outcome": "recorded",
            "payment_id": str(payment_id),
            "channel": "cash",
            "payment_type": None,
            "reference": reference,
            "amount_pence": pence,
            "status": status,
            "import_rule": None,
        }
        for number, payment_id, reference, pence, status in (
            (2, allocated, CT_REF, 1_234, "allocated"),
            (3, waiting, "UNKNOWN", 500, "suspense"),
        )
    ]
    batch_id = old_import(ledger, stored)
    lines = get_import(ledger, UUID(batch_id))["lines"]
    assert [line["fund_code"] for line in lines] == ["CT", None]
    stored_lines = next(e for _, e in ledger.read_events() if type(e).__name__ == "Imported").lines
    assert all("fund_code" not in line for line in stored_lines)  # read side only


def test_a_returned_cheque_finds_its_receipt_recorded_with_full_width_digits(
    ledger, importer, monkeypatch
) -> None:
    """Before 2026-12-01 a \\d fund rule took full-width digits, kept as they came; the bank's
    returned cheque names the reference in ASCII."""

    wide = "".join(chr(ord(digit) - ord("0") + 0xFF10) for digit in CT_REF)
    ledger.amend_fund(
        "CT",
        {"reference_rule": {"min_length": 8, "max_length": 8, "pattern": "\\d{8}"}},
        CommandContext("supervisor:test"),
        "references as 0.1.0 took them",
    )
    with references_unfolded(monkeypatch):
        paid = import_file(ledger, allpay_file(allpay_line(wide, "40.00")), importer, file_name="a")
    original = get_import(ledger, paid.batch_id)["lines"][0]["payment_id"]
    assert ledger.get_payment(original)["reference"] == wide
    returned = allpay_file(allpay_line(CT_REF, "40.00", "Q"), allpay_line(SUN_REF, "5.00", "P"))
    import_file(ledger, returned, importer, file_name="b")
    assert ledger.get_payment(original)["status"] == "reversed"


@pytest.mark.parametrize("content", [b"", b"\r\n\r\n  \n", b"\xef\xbb\xbf"])
def test_an_empty_file_is_refused_as_empty_not_for_a_missing_trailer(
    ledger, importer, content
) -> None:
    error = refusal(ledger, content, importer)
    assert [problem.reason for problem in error.problems] == [
        "the file is empty or holds only blank lines: ask its sender for the file again"
    ]


def test_an_unknown_format_is_refused_even_for_a_file_already_imported(ledger, importer) -> None:
    content = allpay_file(allpay_line(CT_REF, "25.00"))
    import_file(ledger, content, importer, file_name="monday.txt")
    with pytest.raises(InvalidRequest, match="unknown file format 'xyz'"):
        import_file(ledger, content, importer, file_name="monday.txt", file_format="xyz")


def test_each_line_says_why_its_receipt_went_to_suspense_in_one_read(ledger, importer) -> None:
    """`import show`, GET /imports/{id} and the import's page said a line was in suspense
    but not why: the reason is its receipt's own (Received), read for the whole batch in
    one query however many lines wait in suspense."""
    content = allpay_file(
        allpay_line(CT_REF, "25.00", "P"),
        *(allpay_line("NOSUCHREF", "1.00", "Z") for _ in range(40)),
        allpay_line("ADJ", "3.00", "C"),
    )
    batch_id = import_file(ledger, content, importer, file_name="be.txt").batch_id
    engine = event_store.engine(ledger.repository.event_store.recorder)
    statements: list[str] = []

    def count(*args) -> None:
        statements.append(args[2])

    sqlalchemy.event.listen(engine, "before_cursor_execute", count)
    try:
        lines = get_import(ledger, batch_id)["lines"]
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", count)
    reasons = [line["suspense_reason"] for line in lines]
    assert reasons == [None, *["no_matching_fund"] * 40, "cash_adjustment"]
    assert len(statements) <= 5, statements
