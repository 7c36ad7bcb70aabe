"""A statement line an import rule sent to a fund (by its narrative: perhaps another
channel's money counted twice) stays on the exceptions report until a person checks it
(check_line: recorded with who, when and why; undone by undo_line_check, both kept), or its
receipt is refunded or reversed in full. SQLite and PostgreSQL; the books kept, read afresh
and stored agree."""

from __future__ import annotations

from uuid import UUID

import pytest

from application.import_rules import add_rule
from application.imports import get_import, import_file, reverse_import
from application.reconciliation import (
    check_line,
    kept_books,
    link_counted_twice,
    undo_line_check,
)
from domain.errors import ImportLineNotFound, LineNotChecked, LineNotToCheck, ReasonRequired
from domain.imports import ImportBatch
from domain.payment import ReversalKind
from income_ledger.bootstrap import build_ledger
from tests.application.test_exceptions_decided_lines import same_every_way
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_late_statement_links import OFFICER, SUPERVISOR
from tests.application.test_statement_imports import YESTERDAY, camt, entry
from tests.domain.helpers import CT_REF, CT_REF_2


def till_rule(ledger) -> None:
    add_rule(
        ledger,
        {
            "name": "till deposits",
            "narrative_contains": "TILL DEPOSIT",
            "fund_code": "CT",
            "rewrite_pattern": "[A-Z ]+[0-9]*",
            "rewrite_to": CT_REF_2,
        },
        SUPERVISOR,
        "the counter's cash goes to council tax",
    )


def rule_lines(ledger, count: int = 4) -> tuple[UUID, list[str]]:
    till_rule(ledger)
    statement = camt(
        *(
            entry(f"1{n}.00", day=YESTERDAY, ref=f"B{n}", text=f"TILL DEPOSIT {n}")
            for n in range(1, count + 1)
        ),
        entry("20.00", day=YESTERDAY, ref="B9", text=CT_REF),  # a payer's own: no exception
    )
    batch_id = import_file(ledger, statement, OFFICER, file_name="day.xml").batch_id
    view = get_import(ledger, batch_id)["lines"]
    assert [line["status"] for line in view] == ["allocated"] * (count + 1)
    assert all(line["import_rule"] for line in view[:count])
    return batch_id, [line["payment_id"] for line in view]


def listed(report: dict) -> list[int]:
    return [row["line"] for row in report["unmatched_statement_lines"]]


def test_a_person_checks_a_rule_line_and_it_leaves_the_report_until_undone(ledger) -> None:
    batch_id, _ = rule_lines(ledger, 2)
    assert listed(same_every_way(ledger)) == [1, 2]
    position = kept_books(ledger).position

    done = check_line(ledger, batch_id, 1, OFFICER, "the till's paying-in slip matches")
    assert done.checked and done.actor == OFFICER.actor and done.amount_pence == 1_100
    assert kept_books(ledger).position > position, "a check moves the report's position"
    assert listed(same_every_way(ledger)) == [2]
    view = get_import(ledger, batch_id)["lines"][0]
    assert view["checked"]["checked_by"] == OFFICER.actor
    assert view["checked"]["reason"] == "the till's paying-in slip matches"
    assert view["checked"]["checked_at"]

    undone = undo_line_check(ledger, batch_id, 1, SUPERVISOR, "the slip was another day's")
    assert not undone.checked and undone.on_report
    assert listed(same_every_way(ledger)) == [1, 2]
    view = get_import(ledger, batch_id)["lines"][0]
    assert view["checked"] is None
    (history,) = view["checks_undone"]
    assert history["checked_by"] == OFFICER.actor and history["undone_by"] == SUPERVISOR.actor
    assert history["undo_reason"] == "the slip was another day's"
    # The history keeps both, in order: who, when, why.
    events = ledger.repository.event_store.get(batch_id)
    names = [type(event).__name__ for event in events]
    assert names[-2:] == ["LineChecked", "LineCheckUndone"]

    check_line(ledger, batch_id, 1, SUPERVISOR, "checked again with the bank")
    assert listed(same_every_way(ledger)) == [2]
    assert link_counted_twice(ledger, OFFICER) == []


def test_a_rule_line_refunded_or_reversed_in_full_leaves_the_report(ledger) -> None:
    _, payments = rule_lines(ledger, 4)
    refunded, reversed_, partly, _untouched = (UUID(pid) for pid in payments[:4])
    ledger.refund(refunded, 1_100, OFFICER, "not ours", source=("CT", CT_REF_2))
    ledger.reverse(reversed_, ReversalKind.COUNTED_TWICE, OFFICER, "the till's own record")
    ledger.refund(partly, 500, OFFICER, "overpaid", source=("CT", CT_REF_2))
    assert listed(same_every_way(ledger)) == [3, 4]
    books = kept_books(ledger)
    # (a reversed receipt's line no longer waits at all: Books.unmatched_lines)
    assert {line for _, line in books.decided_lines} == {1}

    ledger.refund(partly, 800, OFFICER, "the rest too", source=("CT", CT_REF_2))
    assert listed(same_every_way(ledger)) == [4]


def test_a_check_is_refused_storing_nothing(ledger) -> None:
    batch_id, _ = rule_lines(ledger, 1)
    statement = camt(entry("9.99", day=YESTERDAY, ref="S1", text="NO IDEA"))
    other = import_file(ledger, statement, OFFICER, file_name="other.xml").batch_id
    version = ledger.repository.get(batch_id).version
    with pytest.raises(LineNotToCheck, match="not a line an import rule sent to a fund"):
        check_line(ledger, batch_id, 2, OFFICER, "a payer's own")  # a fund took it by reference
    with pytest.raises(LineNotToCheck, match="allocating, refunding or reversing"):
        check_line(ledger, other, 1, OFFICER, "in suspense")
    with pytest.raises(ImportLineNotFound):
        check_line(ledger, batch_id, 7, OFFICER, "no such line")
    with pytest.raises(ReasonRequired):
        check_line(ledger, batch_id, 1, OFFICER, "  ")
    with pytest.raises(LineNotChecked):
        undo_line_check(ledger, batch_id, 1, OFFICER, "never checked")
    assert ledger.repository.get(batch_id).version == version
    check_line(ledger, batch_id, 1, OFFICER, "right")
    with pytest.raises(LineNotToCheck, match="checked already, by officer:recon"):
        check_line(ledger, batch_id, 1, OFFICER, "twice")
    reverse_import(ledger, batch_id, SUPERVISOR, "wrong file")
    batch = ledger.repository.get(batch_id)
    assert isinstance(batch, ImportBatch) and 1 in batch.checked_lines
    rows = same_every_way(ledger)["unmatched_statement_lines"]
    assert [(row["batch_id"], row["line"]) for row in rows] == [(str(other), 1)]


def test_a_line_of_a_file_that_is_no_bank_statement_is_not_checked(ledger) -> None:
    """An Allpay (or CSV) file's receipts an import rule allocated are never on the
    exceptions report as statement lines: 'checked: it is off the report' would record a
    check that means nothing, so it is refused, storing nothing."""
    add_rule(
        ledger,
        {"name": "CT prefix", "reference_pattern": "CT[0-9]{8}", "fund_code": "CT"}
        | {"strip_prefix": "CT"},
        SUPERVISOR,
        "CT files carry a prefix",
    )
    content = allpay_file(allpay_line(f"CT{CT_REF}", "25.00"))
    batch_id = import_file(ledger, content, OFFICER, file_name="allpay.txt").batch_id
    (line,) = get_import(ledger, batch_id)["lines"]
    assert line["import_rule"] and line["status"] == "allocated"
    version = ledger.repository.get(batch_id).version
    with pytest.raises(LineNotToCheck, match="not a bank statement"):
        check_line(ledger, batch_id, 1, OFFICER, "the Allpay file is right")
    assert ledger.repository.get(batch_id).version == version


def test_a_line_whose_receipt_was_reversed_or_refunded_in_full_is_not_checked(ledger) -> None:
    """A rule line whose receipt an officer reversed (counted twice: the opposite of
    'this is right') or refunded in full left the report by itself: a check of it would
    contradict the reversal or say nothing, so it is refused, storing nothing; a line
    refunded in part is still checked."""
    batch_id, payments = rule_lines(ledger, 3)
    reversed_, refunded, partly = (UUID(pid) for pid in payments[:3])
    ledger.reverse(reversed_, ReversalKind.COUNTED_TWICE, OFFICER, "the till's own record")
    ledger.refund(refunded, 1_200, OFFICER, "not ours", source=("CT", CT_REF_2))
    ledger.refund(partly, 500, OFFICER, "overpaid", source=("CT", CT_REF_2))
    version = ledger.repository.get(batch_id).version
    with pytest.raises(LineNotToCheck, match="was reversed"):
        check_line(ledger, batch_id, 1, OFFICER, "the slip matches")
    with pytest.raises(LineNotToCheck, match="refunded in full"):
        check_line(ledger, batch_id, 2, OFFICER, "the slip matches")
    assert ledger.repository.get(batch_id).version == version
    assert check_line(ledger, batch_id, 3, OFFICER, "the slip matches").checked
    assert listed(same_every_way(ledger)) == []


def test_an_undone_check_of_a_line_since_refunded_in_full_says_it_stays_off(ledger) -> None:
    """A line checked, then its receipt refunded in full, left the report by itself: undoing
    the check is recorded, and the answer says the line stays off the report (not 'on the
    exceptions report again', which it is not)."""
    batch_id, payments = rule_lines(ledger, 2)
    check_line(ledger, batch_id, 1, OFFICER, "the slip matches")
    check_line(ledger, batch_id, 2, OFFICER, "the slip matches")
    ledger.refund(UUID(payments[0]), 1_100, OFFICER, "not ours", source=("CT", CT_REF_2))
    ledger.refund(UUID(payments[1]), 500, OFFICER, "overpaid", source=("CT", CT_REF_2))
    settled = undo_line_check(ledger, batch_id, 1, SUPERVISOR, "the slip was another day's")
    partly = undo_line_check(ledger, batch_id, 2, SUPERVISOR, "the slip was another day's")
    assert not settled.checked and not settled.on_report
    assert not partly.checked and partly.on_report
    assert settled.to_dict()["on_report"] is False
    assert listed(same_every_way(ledger)) == [2]


def test_a_check_of_a_reversed_import_is_not_undone(ledger) -> None:
    """Reversing an import takes its lines off the report: undoing a check of one would
    say 'on the exceptions report again' of a line that is not, so it is refused (as
    unlinking a line of a reversed import is), storing nothing."""
    batch_id, _ = rule_lines(ledger, 1)
    check_line(ledger, batch_id, 1, OFFICER, "right")
    reverse_import(ledger, batch_id, SUPERVISOR, "wrong file")
    version = ledger.repository.get(batch_id).version
    with pytest.raises(LineNotChecked, match="was reversed"):
        undo_line_check(ledger, batch_id, 1, OFFICER, "wrong")
    assert ledger.repository.get(batch_id).version == version


def test_a_rule_line_refunded_in_full_in_parts_or_from_another_fund_leaves_the_report(
    ledger,
) -> None:
    """Refunded in full however: in two parts, or after its money was moved to another fund
    (part of it, or all) and refunded there and here; a part left anywhere keeps it listed."""
    _, payments = rule_lines(ledger, 4)
    twice, moved, split, left = (UUID(pid) for pid in payments[:4])
    ledger.refund(twice, 400, OFFICER, "overpaid", source=("CT", CT_REF_2))
    assert listed(same_every_way(ledger)) == [1, 2, 3, 4]
    ledger.refund(twice, 700, OFFICER, "the rest", source=("CT", CT_REF_2))
    ledger.transfer(moved, ("CT", CT_REF_2), ("CT", CT_REF), 1_200, OFFICER, "wrong account")
    ledger.refund(moved, 1_200, OFFICER, "not ours", source=("CT", CT_REF))
    ledger.transfer(split, ("CT", CT_REF_2), ("CT", CT_REF), 500, OFFICER, "part of it")
    ledger.refund(split, 500, OFFICER, "not ours", source=("CT", CT_REF))
    ledger.transfer(left, ("CT", CT_REF_2), ("CT", CT_REF), 500, OFFICER, "part of it")
    ledger.refund(left, 500, OFFICER, "not ours", source=("CT", CT_REF))
    assert listed(same_every_way(ledger)) == [3, 4]
    ledger.refund(split, 800, OFFICER, "the rest", source=("CT", CT_REF_2))
    assert listed(same_every_way(ledger)) == [4]


def test_a_rule_line_waits_while_its_refund_waits_and_after_it_is_declined(
    ledger, settings
) -> None:
    """A refund above the approval limit is a request: no money moves, and the line stays
    listed while it waits and when it is declined; once approved, it leaves the report."""
    limited = build_ledger(settings.model_copy(update={"refund_approval_limit_pence": 1_000}))
    try:
        _, payments = rule_lines(limited, 2)
        declined, approved = (UUID(pid) for pid in payments[:2])
        first = limited.refund(declined, 1_100, OFFICER, "not ours", source=("CT", CT_REF_2))
        second = limited.refund(approved, 1_200, OFFICER, "not ours", source=("CT", CT_REF_2))
        assert first.refund_request_id and second.refund_request_id
        assert listed(same_every_way(limited)) == [1, 2]
        limited.decline_refund(declined, first.refund_request_id, SUPERVISOR, "it is ours")
        assert listed(same_every_way(limited)) == [1, 2]
        limited.approve_refund(approved, second.refund_request_id, SUPERVISOR)
        assert listed(same_every_way(limited)) == [1]
    finally:
        limited.close()


def test_a_rule_line_its_rule_left_in_suspense_part_allocated_then_refunded(ledger) -> None:
    """A line whose rule's rewritten reference no fund takes waits in suspense (a suspense
    line, not one to check): allocated in part it stays listed; the rest refunded, nothing
    of it is left in suspense and it leaves the report, whatever is later refunded."""
    add_rule(
        ledger,
        {"name": "odd deposits", "narrative_contains": "ODD DEPOSIT", "fund_code": "CT"}
        | {"rewrite_pattern": "[A-Z ]+[0-9]*", "rewrite_to": "NOTAREF"},
        SUPERVISOR,
        "odd deposits",
    )
    statement = camt(entry("11.00", day=YESTERDAY, ref="B1", text="ODD DEPOSIT 1"))
    batch_id = import_file(ledger, statement, OFFICER, file_name="day.xml").batch_id
    (line,) = get_import(ledger, batch_id)["lines"]
    assert line["status"] == "suspense" and line["import_rule"]
    receipt = UUID(line["payment_id"])
    ledger.allocate(receipt, [("CT", CT_REF, 500)], OFFICER, "part of it is council tax")
    assert listed(same_every_way(ledger)) == [1]
    ledger.refund(receipt, 600, OFFICER, "the rest is not ours")
    assert listed(same_every_way(ledger)) == []
    ledger.refund(receipt, 500, OFFICER, "none of it is ours", source=("CT", CT_REF))
    assert listed(same_every_way(ledger)) == []
