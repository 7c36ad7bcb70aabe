"""The import batch records its lines' entries as the event stores them (#10, speed): a
100,000-line file's entries come from the import's workers as those dicts, and the batch
makes its ImportedLines of them only when they are read, with the same lines and totals."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.imports import (
    UNMATCHED,
    ImportBatch,
    ImportedLine,
    ImportFormat,
    LineKind,
    ParsedFile,
    StatementLink,
    batch_totals,
)

OUTCOMES = ["recorded", "known", "reversed", "reconciled", UNMATCHED]
LINK = StatementLink("rule 1", ("a-payment",), "one receipt of the amount")


@st.composite
def imported_lines(draw: st.DrawFn) -> list[ImportedLine]:
    count = draw(st.integers(0, 30))
    lines = []
    for number in range(1, count + 1):
        outcome = draw(st.sampled_from(OUTCOMES))
        linked = outcome in ("reconciled", UNMATCHED)
        lines.append(
            ImportedLine(
                number,
                draw(st.sampled_from(list(LineKind))).value,
                outcome,
                None if linked else f"payment-{number}",
                "allpay",
                draw(st.sampled_from([None, "P"])),
                f"REF{number}",
                draw(st.integers(1, 10**9)),
                None if linked else "allocated",
                import_rule=None if linked else draw(st.sampled_from([None, {"rule": "r"}])),
                booking_date=draw(st.sampled_from([None, "2026-11-30"])),
                link=LINK if outcome == "reconciled" else None,
                fund_code=draw(st.sampled_from([None, "CT", "CT,HRA"])),
            )
        )
    return lines


def recorded(lines: list[ImportedLine]) -> ImportBatch:
    parsed = ParsedFile(ImportFormat.ALLPAY, (), len(lines), 0, len(lines))
    return ImportBatch.record(
        parsed,
        file_name="day.txt",
        sha256="ab" * 32,
        entries=[line.to_dict() for line in lines],
        actor="test",
    )


@settings(max_examples=200)
@given(imported_lines())
def test_a_batch_recorded_of_its_entries_reads_as_its_lines(lines: list[ImportedLine]) -> None:
    batch = recorded(lines)
    assert "lines" not in vars(batch)  # not made as the import records the batch
    assert batch.totals == batch_totals(tuple(lines))
    assert batch.lines == tuple(lines)
    (event,) = batch.collect_events()
    assert event.lines == [line.to_dict() for line in lines]
    assert event.imported_lines == tuple(lines)
    assert batch.receipt_ids == [line.payment_id for line in lines if line.outcome == "recorded"]


def test_a_batch_read_back_from_its_event_has_the_same_lines() -> None:
    lines = [
        ImportedLine(1, "receipt", "recorded", "p1", "allpay", "P", "R1", 100, "allocated"),
        ImportedLine(2, "receipt", "known", "p2", "allpay", "P", "R2", 250, "suspense"),
        ImportedLine(3, "returned_cheque", "reversed", "p0", "allpay", "Q", "R0", 75, "reversed"),
    ]
    batch = recorded(lines)
    (event,) = batch.collect_events()
    again = event.mutate(None)
    assert again.lines == batch.lines == tuple(lines)
    assert again.totals == batch.totals == batch_totals(tuple(lines))
    assert (again.totals.receipts_count, again.totals.receipts_pence) == (1, 100)
    assert again.totals.returned_cheques_count == 1
