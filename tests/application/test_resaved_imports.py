"""The same file re-saved otherwise is imported once (issue #10).

An editor or mail client re-saves a day's file with CRLF for LF (or the reverse, or a mix of
them), adds or drops its final newline or blank final lines, or adds or drops a UTF-8 byte
order mark: other bytes, so another SHA-256, but the same day's income. Such a copy is
answered as the earlier import, storing nothing, on SQLite and PostgreSQL, also when the two
are imported at the same moment (the file's content claim, FileContentClaim); the ids of
what is imported stay those of the exact bytes.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest

import application.imports
from application.imports import get_import, import_file, list_imports, reverse_import
from application.ledger import CommandContext, IncomeLedger
from domain.errors import LedgerError
from domain.imports import UTF8_BOM, batch_id_for, resaved_batch_ids
from domain.limits import uk_today
from income_ledger.bootstrap import build_ledger
from income_ledger.settings import Settings
from tests.application.test_concurrency import _race
from tests.application.test_imports import RACING_LINES, allpay_file, allpay_line, csv_file
from tests.domain.helpers import CT_REF, SUN_REF

IMPORTER = CommandContext("officer:importer")
OTHER = CommandContext("officer:other")


def lf(content: bytes) -> bytes:
    return content.replace(b"\r\n", b"\n")


def crlf(content: bytes) -> bytes:
    return lf(content).replace(b"\n", b"\r\n")


def no_final_newline(content: bytes) -> bytes:
    return content.removesuffix(b"\n").removesuffix(b"\r")


def mixed(content: bytes) -> bytes:
    """Every other line ending LF, the others CRLF (lines pasted in from another file)."""
    rows = lf(content).split(b"\n")
    return b"".join(
        row + (b"" if n == len(rows) - 1 else b"\n" if n % 2 else b"\r\n")
        for n, row in enumerate(rows)
    )


def blank_final_lines(content: bytes) -> bytes:
    """Blank lines of spaces and tabs after the last line, as a spreadsheet may leave."""
    return content + b"   \r\n\t\r\n \r\n"


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
    # Caught by the file's content claim (imports recorded since it is made).
    "allpay crlf with mixed line endings": (allpay_crlf, {}, mixed),
    "allpay mixed as crlf": (lambda: mixed(allpay_crlf()), {}, crlf),
    "allpay crlf with old mac line endings": (
        allpay_crlf,
        {},
        lambda c: lf(c).replace(b"\n", b"\r"),
    ),
    "allpay crlf with a byte order mark": (allpay_crlf, {}, lambda c: UTF8_BOM + c),
    "allpay with its byte order mark removed": (
        lambda: UTF8_BOM + allpay_crlf(),
        {},
        lambda c: c.removeprefix(UTF8_BOM),
    ),
    "allpay crlf with blank final lines": (allpay_crlf, {}, blank_final_lines),
    "allpay with a byte order mark as lf and mixed": (
        allpay_crlf,
        {},
        lambda c: UTF8_BOM + mixed(lf(c)) + b"\n\n",
    ),
    "csv with a byte order mark, crlf": (csv_lf, CSV_TOTALS, lambda c: UTF8_BOM + crlf(c)),
    "csv mixed with a blank final line": (csv_lf, CSV_TOTALS, lambda c: mixed(crlf(c)) + b"\n  "),
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
    nothing: so is a copy saved otherwise (its content claim is never released)."""
    content = allpay_crlf()
    first = import_file(ledger, content, IMPORTER, file_name="monday.txt")
    reverse_import(ledger, first.batch_id, CommandContext("supervisor:boss"), "wrong day")
    position = ledger.max_position()
    for again in (content, lf(content), mixed(content), UTF8_BOM + content):
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
        return sorted(
            batch_id_for(hashlib.sha256(start + form).hexdigest())
            for form in forms
            for start in (b"", UTF8_BOM)
        )

    def resaved(content: bytes) -> list:
        return resaved_batch_ids(content, hashlib.sha256(content).hexdigest())

    forms = [b"a\nb\n", b"a\nb", b"a\nb\n\n", b"a\r\nb", b"a\r\nb\r\n", b"a\r\nb\r\n\r\n"]
    own = batch_id_for(hashlib.sha256(b"a\r\nb\r\n").hexdigest())
    assert resaved(b"a\r\nb\r\n") == [i for i in ids(*forms) if i != own]
    short = [b"a\nb", b"a\nb\n", b"a\r\nb", b"a\r\nb\r\n"]
    assert resaved(b"a\nb") == [
        i for i in ids(*short) if i != batch_id_for(hashlib.sha256(b"a\nb").hexdigest())
    ]
    assert resaved(b"a\nb\r\n") == ids(*forms)  # mixed: the pure forms'
    with_bom = UTF8_BOM + b"a\nb"
    assert resaved(with_bom) == [
        i for i in ids(*short) if i != batch_id_for(hashlib.sha256(with_bom).hexdigest())
    ]


def _as_if_imported_before_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    """Imports made now claim content no copy has: as if recorded before content was
    claimed (a ledger's older imports), found by their copies' batch ids alone."""
    monkeypatch.setattr(application.imports, "content_sha256", lambda content: "0" * 64)


@pytest.mark.parametrize(
    "resave",
    [lf, no_final_newline, lambda c: UTF8_BOM + c, lambda c: UTF8_BOM + lf(c)[:-1]],
    ids=["lf", "no final newline", "byte order mark", "byte order mark, lf, no final newline"],
)
def test_a_copy_of_an_import_made_before_content_was_claimed_is_found_by_its_forms(
    ledger, monkeypatch, resave
) -> None:
    """Other line endings, final newline and (since) byte order mark are looked up as batch
    ids. A mix of line endings in the file first imported is not: its bytes cannot be made
    again from a copy's, and only imports made since claim their content."""
    content = allpay_crlf()
    with monkeypatch.context() as before_claims:
        _as_if_imported_before_claims(before_claims)
        first = import_file(ledger, content, IMPORTER, file_name="monday.txt")
    position = ledger.max_position()
    again = import_file(ledger, resave(content), OTHER, file_name="monday-copy.txt")
    assert not again.recorded and again.batch_id == first.batch_id
    assert ledger.max_position() == position


def test_a_copy_saving_while_the_other_saves_collides_with_its_content_claim(
    ledger, monkeypatch
) -> None:
    """Both copies looked and found nothing imported; the other saved first, just before
    this one saves: this one's save collides with the other's claim of the same content,
    stores nothing, and is answered as the other (before the claim, both were recorded:
    the same day's income counted twice)."""
    content = allpay_crlf()
    record = application.imports._record
    first: list[object] = []
    started: list[bool] = []

    def meanwhile(*args, **kwargs):
        if not started:  # the other copy, imported whole (its own save not held)
            started.append(True)
            first.append(import_file(ledger, mixed(UTF8_BOM + lf(content)), OTHER, file_name="c"))
        return record(*args, **kwargs)

    monkeypatch.setattr(application.imports, "_record", meanwhile)
    outcome = import_file(ledger, content, IMPORTER, file_name="monday.txt")
    assert first[0].recorded
    assert not outcome.recorded and outcome.batch_id == first[0].batch_id
    assert outcome.batch["file_name"] == "c"
    events = Counter(type(event).__name__ for _, event in ledger.read_events())
    assert (events["Imported"], events["ContentClaimed"], events["Received"]) == (1, 1, 2)


def _racing_lines() -> bytes:
    """An Allpay file of RACING_LINES lines (by COPY on PostgreSQL), in CRLF."""
    references = [CT_REF, SUN_REF, "NOSUCH"]
    return allpay_file(
        *(allpay_line(references[n % 3], f"{1 + n % 9}.{n % 100:02d}") for n in range(RACING_LINES))
    )


def _import_copy_in_a_process(barrier, url: str, content: bytes) -> str:
    """Import `content` with a ledger (and connections) of this process's own; both racers
    save at once, each having checked its file and found nothing imported (the barrier is
    at the save, so the race does not depend on which checks its lines faster)."""
    ledger = build_ledger(Settings(database_url=url))
    record = application.imports._record

    def together(*args, **kwargs):
        barrier.wait(60)
        return record(*args, **kwargs)

    application.imports._record = together
    try:
        outcome = import_file(ledger, content, CommandContext("officer:race"), file_name="race")
        return "recorded" if outcome.recorded else "already_imported"
    except LedgerError as error:
        return error.code
    finally:
        application.imports._record = record
        ledger.close()


def _imported_once(ledger: IncomeLedger, results: list[str]) -> None:
    assert Counter(results) == {"recorded": 1, "already_imported": 1}, results
    events = Counter(type(event).__name__ for _, event in ledger.read_events())
    assert events["Imported"] == events["ContentClaimed"] == 1, events
    assert events["Received"] == RACING_LINES, events
    (batch,) = list_imports(ledger)
    lines = get_import(ledger, batch["batch_id"])["lines"]
    assert Counter(line["outcome"] for line in lines) == {"recorded": RACING_LINES}


def test_two_processes_saving_two_copies_at_once_record_the_file_once(ledger, settings) -> None:
    content = _racing_lines()
    url = settings.database_url
    results = _race(_import_copy_in_a_process, [(url, content), (url, mixed(lf(content)))])
    _imported_once(ledger, results)


def test_two_threads_saving_two_copies_at_once_record_the_file_once(ledger, monkeypatch) -> None:
    """As the API's threads share one ledger."""
    content = _racing_lines()
    barrier = threading.Barrier(2)
    record = application.imports._record

    def together(*args, **kwargs):
        barrier.wait(60)
        return record(*args, **kwargs)

    monkeypatch.setattr(application.imports, "_record", together)
    results: list[str] = []

    def run(copy: bytes) -> None:
        try:
            outcome = import_file(ledger, copy, IMPORTER, file_name="till")
            results.append("recorded" if outcome.recorded else "already_imported")
        except LedgerError as error:
            results.append(error.code)

    threads = [threading.Thread(target=run, args=(c,)) for c in (content, UTF8_BOM + content)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    _imported_once(ledger, results)
