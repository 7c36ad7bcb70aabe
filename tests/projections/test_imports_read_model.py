"""The import_batches read-model table: one row per imported file, on both backends."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from application.imports import get_import, import_file, list_imports, reverse_import
from application.ledger import CommandContext
from application.reconciliation import link_counted_twice
from domain.errors import NothingToReverse
from income_ledger.bootstrap import event_source
from projections.maintenance import rebuild, verify
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_statement_imports import camt, entry
from tests.domain.helpers import CT_REF

OFFICER = CommandContext("officer:files")


def batches(projection) -> list:
    with projection.engine.connect() as connection:
        return list(connection.execute(text("SELECT * FROM import_batches ORDER BY imported_at")))


def test_each_import_is_a_row_and_its_reversal_updates_it(ledger, projection) -> None:
    first = import_file(
        ledger,
        allpay_file(allpay_line(CT_REF, "10.00"), allpay_line("NOSUCH", "2.50", "T")),
        OFFICER,
        file_name="be0101.txt",
    )
    projection.catch_up()  # the first file's row is written before its reversal comes
    ledger.refund(get_import(ledger, first.batch_id)["lines"][1]["payment_id"], 50, OFFICER, "x")
    second = import_file(
        ledger, allpay_file(allpay_line(CT_REF, "10.00", "Q")), OFFICER, file_name="q"
    )
    reverse_import(ledger, first.batch_id, CommandContext("supervisor:jo"), "wrong day")
    with pytest.raises(NothingToReverse, match="nothing of this import's receipts remains"):
        reverse_import(ledger, second.batch_id, CommandContext("supervisor:jo"), "none held")
    projection.catch_up()  # the first file's reversal and the second file come in one page
    first_row, second_row = batches(projection)
    assert first_row.file_name == "be0101.txt" and first_row.imported_by == "officer:files"
    assert (first_row.receipts_count, first_row.receipts_pence) == (2, 1_250)
    assert first_row.control_total_pence == 1_250 and first_row.control_count == 2
    # The returned cheque took the first file's CT receipt back; the refund left 200 pence.
    assert first_row.reversed_by == "supervisor:jo" and first_row.reversed_pence == 200
    assert second_row.returned_cheques_count == 1 and second_row.receipts_count == 0
    assert second_row.reversed_at is None and second_row.reversed_pence == 0
    assert [b["batch_id"] for b in list_imports(ledger)][::-1] == [
        first_row.batch_id,
        second_row.batch_id,
    ]
    source = event_source(ledger)
    assert verify(projection.engine, source).ok
    assert rebuild(projection.engine, source) == ledger.max_position()
    assert batches(projection) == [first_row, second_row]


def test_a_statement_line_linked_later_is_an_audit_row_and_the_figures_verify(
    ledger, projection
) -> None:
    statement = import_file(
        ledger, camt(entry("7.00", ref="B1", text="ALLPAY LTD")), OFFICER, file_name="s.xml"
    )
    import_file(
        ledger,
        allpay_file(allpay_line(CT_REF, "3.00"), allpay_line(CT_REF, "4.00")),
        OFFICER,
        file_name="be.txt",
    )
    assert len(link_counted_twice(ledger, OFFICER)) == 1
    projection.catch_up()
    with projection.engine.connect() as connection:
        linked = connection.execute(
            text("SELECT payment_id, reason FROM audit_trail WHERE action = 'LineLinked'")
        ).one()
        suspense = connection.execute(
            text("SELECT balance_pence FROM account_balances WHERE account = 'suspense'")
        ).scalar()
    assert linked.payment_id is None and linked.reason.startswith("counted twice: s.xml line 1")
    assert not suspense  # the line's suspense receipt reversed; the Allpay receipts allocated
    row = next(r for r in batches(projection) if r.batch_id == str(statement.batch_id))
    assert (row.receipts_count, row.receipts_pence) == (1, 700)
    assert verify(projection.engine, event_source(ledger)).ok
