"""The same file re-saved with other line endings or final newline is imported once (issue #10).

An editor or mail client re-saves a day's file with CRLF for LF (or the reverse), or adds or
drops its final newline: other bytes, so another SHA-256, but the same day's income. Such a
copy is answered as the earlier import, storing nothing, on SQLite and PostgreSQL; the ids
of what is imported stay those of the exact bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

import pytest

import application.imports
from application.imports import import_file, reverse_import
from application.ledger import CommandContext, IncomeLedger
from domain.imports import batch_id_for, resaved_batch_ids
from domain.limits import uk_today
from tests.application.test_imports import allpay_file, allpay_line, csv_file
from tests.domain.helpers import CT_REF, SUN_REF

IMPORTER = CommandContext("officer:importer")
OTHER = CommandContext("officer:other")


def lf(content: bytes) -> bytes:
    return content.replace(b"\r\n", b"\n")


def crlf(content: bytes) -> bytes:
    return lf(content).replace(b"\n", b"\r\n")


def no_final_newline(content: bytes) -> bytes:
    return content.removesuffix(b"\n").removesuffix(b"\r")


def allpay_crlf() -> bytes:
    """As Allpay sends it: CRLF, with a final newline."""
    return allpay_file(allpay_line(CT_REF, "25.00"), allpay_line("NOSUCH", "5.00"))


def csv_lf() -> bytes:
    """As a spreadsheet may save it: LF, without a final newline."""
    day = (uk_today() - timedelta(days=1)).isoformat()
    return csv_file(f"cash,12.50,{CT_REF},{day},,", f"cheque,7.50,{SUN_REF},{day},,SUN")


CSV_TOTALS = {"expect_total_pence": 2_000, "expect_count": 2}

COPIES: dict[str, tuple[Callable[[], bytes], dict, Callable[[bytes], bytes]]] = {
    "allpay crlf as lf": (allpay_crlf, {}, lf),
    "allpay crlf without final newline": (allpay_crlf, {}, no_final_newline),
    "allpay crlf as lf without final newline": (allpay_crlf, {}, lambda c: lf(c)[:-1]),
    "allpay crlf with another final newline": (allpay_crlf, {}, lambda c: c + b"\r\n"),
    "allpay lf as crlf": (lambda: lf(allpay_crlf()), {}, crlf),
    "csv lf as crlf": (csv_lf, CSV_TOTALS, crlf),
    "csv with a final newline": (csv_lf, CSV_TOTALS, lambda c: c + b"\n"),
    "csv as crlf with a final newline": (csv_lf, CSV_TOTALS, lambda c: crlf(c) + b"\r\n"),
    "csv crlf as lf": (lambda: crlf(csv_lf()), CSV_TOTALS, lf),
}


@pytest.mark.parametrize("case", COPIES)
def test_a_copy_resaved_otherwise_is_answered_as_the_first_import(ledger, case) -> None:
    original, totals, resave = COPIES[case]
    content = original()
    copy = resave(content)
    assert copy != content
    first = import_file(ledger, content, IMPORTER, file_name="monday.txt", **totals)
    assert first.recorded
    assert first.batch_id == batch_id_for(hashlib.sha256(content).hexdigest())
    position = ledger.max_position()
    again = import_file(ledger, copy, OTHER, file_name="monday-copy.txt", **totals)
    assert not again.recorded and again.position is None
    assert again.batch_id == first.batch_id and again.batch["file_name"] == "monday.txt"
    assert ledger.max_position() == position


def test_a_copy_of_a_reversed_import_is_answered_as_the_exact_bytes_are(ledger) -> None:
    """The exact bytes of a reversed import are answered with that import, recording
    nothing: so is a copy re-saved otherwise."""
    content = allpay_crlf()
    first = import_file(ledger, content, IMPORTER, file_name="monday.txt")
    reverse_import(ledger, first.batch_id, CommandContext("supervisor:boss"), "wrong day")
    position = ledger.max_position()
    for again in (content, lf(content)):
        outcome = import_file(ledger, again, OTHER, file_name="monday.txt")
        assert not outcome.recorded and outcome.batch_id == first.batch_id
        assert outcome.batch["reversed"]
    assert ledger.max_position() == position


def test_a_copy_imported_while_the_lines_are_checked_is_found_before_saving(
    ledger, monkeypatch
) -> None:
    """Two copies imported at once: the later to save finds the other's batch before saving
    (their ids differ, so no clash on saving would tell)."""
    content = allpay_crlf()
    checked = application.imports._checked
    first: list[object] = []

    def meanwhile(job, report):
        if job.sha256 == hashlib.sha256(content).hexdigest():
            first.append(import_file(ledger, lf(content), OTHER, file_name="copy.txt"))
        return checked(job, report)

    monkeypatch.setattr(application.imports, "_checked", meanwhile)
    outcome = import_file(ledger, content, IMPORTER, file_name="monday.txt")
    assert first[0].recorded
    assert not outcome.recorded and outcome.batch_id == first[0].batch_id
    events = [type(event).__name__ for _, event in ledger.read_events()]
    assert events.count("Imported") == 1 and events.count("Received") == 2


def test_other_files_are_still_imported(ledger: IncomeLedger) -> None:
    content = allpay_crlf()
    import_file(ledger, content, IMPORTER, file_name="monday.txt")
    other = allpay_file(allpay_line(CT_REF, "25.00"), allpay_line("NOSUCH", "5.01"))
    assert import_file(ledger, lf(other), IMPORTER, file_name="tuesday.txt").recorded


def test_the_resaved_ids_are_the_other_forms_never_the_files_own() -> None:
    def ids(*forms: bytes) -> list:
        return sorted(batch_id_for(hashlib.sha256(form).hexdigest()) for form in forms)

    def resaved(content: bytes) -> list:
        return resaved_batch_ids(content, hashlib.sha256(content).hexdigest())

    forms = [b"a\nb\n", b"a\nb", b"a\nb\n\n", b"a\r\nb", b"a\r\nb\r\n\r\n"]
    assert resaved(b"a\r\nb\r\n") == ids(*forms)
    assert resaved(b"a\nb") == ids(b"a\nb\n", b"a\r\nb", b"a\r\nb\r\n")
    assert resaved(b"a\nb\r\n") == ids(*forms, b"a\r\nb\r\n")  # mixed: the pure forms'
    assert batch_id_for(hashlib.sha256(b"a\nb").hexdigest()) not in resaved(b"a\nb")
