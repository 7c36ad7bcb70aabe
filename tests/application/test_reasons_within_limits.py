"""A person's reason of the full MAX_TEXT_LENGTH is never refused because the ledger adds its
own words to it (a file's name of 255 characters, the line, what a link pays in): choosing a
link, undoing one, reversing an import whose receipts a statement line paid in. The stored
reasons and notes hold the person's whole reason; one character more is refused, naming the
person's limit, with nothing stored. SQLite and PostgreSQL."""

from __future__ import annotations

from uuid import UUID

import pytest

from application.imports import import_file, reverse_import
from application.reconciliation import (
    choose_link,
    exceptions,
    link_counted_twice,
    unlink_line,
)
from domain.cards import MAX_COMPOSED_TEXT_LENGTH, compose_text, own_words
from domain.errors import InvalidRequest
from domain.limits import MAX_TEXT_LENGTH
from tests.application.test_imports import allpay_file, allpay_line
from tests.application.test_late_statement_links import OFFICER, SUPERVISOR
from tests.application.test_statement_imports import camt, entry
from tests.domain.helpers import CT_REF

LONG_STATEMENT = "statement-" + "s" * 241 + ".xml"  # 255 characters, the file name's limit
LONG_ALLPAY = "allpay-" + "a" * 244 + ".txt"
assert len(LONG_STATEMENT) == len(LONG_ALLPAY) == 255


def reason(words: str, length: int = MAX_TEXT_LENGTH) -> str:
    """A reason of exactly `length` characters, as a person may type it (no space at its
    ends, which are trimmed)."""
    return ((words + " ") * (length // len(words) + 1))[: length - 1] + "."


def reasons(ledger, aggregate_id) -> list[str]:
    return [
        getattr(event, "reason", None) or getattr(event, "text", "")
        for event in ledger.repository.event_store.get(UUID(str(aggregate_id)))
    ]


def test_a_500_character_choice_and_undo_are_recorded_whole(ledger) -> None:
    files = [
        str(import_file(ledger, allpay_file(*lines), OFFICER, file_name=name).batch_id)
        for name, lines in (
            ("be1.txt", (allpay_line(CT_REF, "3.00"), allpay_line(CT_REF, "4.00"))),
            ("be2.txt", (allpay_line(CT_REF, "2.00"), allpay_line(CT_REF, "5.00"))),
        )
    ]
    statement = camt(entry("7.00", ref="B1", text="ALLPAY LTD"))
    batch_id = import_file(ledger, statement, OFFICER, file_name=LONG_STATEMENT).batch_id
    (row,) = exceptions(ledger)["unmatched_statement_lines"]
    (key,) = [c["candidate"] for c in row["candidates"] if c["matched_batch_id"] == files[0]]

    too_long = reason("the remittance advice names be1", MAX_TEXT_LENGTH + 1)
    position = ledger.max_position()
    with pytest.raises(InvalidRequest, match="the limit is 500"):
        choose_link(ledger, OFFICER, batch_id, 1, None, too_long, candidate=key)
    assert ledger.max_position() == position

    why = reason("the remittance advice names be1")
    (late,) = choose_link(ledger, OFFICER, batch_id, 1, None, why, candidate=key)
    linked = reasons(ledger, batch_id)[-1]
    assert linked.endswith(f"chosen by a person: {why}") and LONG_STATEMENT in linked
    assert reasons(ledger, late.reversed_payment_id)[-1].endswith(why)

    undo = reason("the payer rang: it was their own transfer")
    (undone,) = unlink_line(ledger, batch_id, 1, SUPERVISOR, undo)
    assert reasons(ledger, batch_id)[-1] == undo
    assert reasons(ledger, undone.restored_payment_id)[-1].endswith(f"({undo})")
    for paid_in in undone.link.matched_payment_ids:
        assert reasons(ledger, paid_in)[-1].endswith(f"(link undone: {undo})")


def test_reversing_an_import_a_statement_paid_in_takes_a_500_character_reason(ledger) -> None:
    statement = camt(entry("7.00", ref="B1", text="ALLPAY LTD"))
    import_file(ledger, statement, OFFICER, file_name=LONG_STATEMENT)
    content = allpay_file(allpay_line(CT_REF, "3.00"), allpay_line(CT_REF, "4.00"))
    allpay = import_file(ledger, content, OFFICER, file_name=LONG_ALLPAY).batch_id
    (late,) = link_counted_twice(ledger, OFFICER)

    why = reason("the bank recalled the whole file: sent twice")
    reverse_import(ledger, allpay, SUPERVISOR, why)
    assert reasons(ledger, allpay)[-1] == why
    undone = reasons(ledger, late.batch_id)[-1]
    assert undone.endswith(why) and LONG_ALLPAY in undone
    restored = reasons(ledger, late.reversed_payment_id)[-1]
    assert restored.endswith(f"{why})") and len(restored) <= MAX_COMPOSED_TEXT_LENGTH


def test_our_words_are_cut_never_the_persons() -> None:
    persons = reason("why")
    composed = compose_text("x" * 2_000, persons, ")")
    assert composed.endswith(persons + ")") and "..." in composed
    again = compose_text("y" * 2_000, composed, ")")
    assert again.endswith(composed + ")") and len(again) <= MAX_COMPOSED_TEXT_LENGTH
    assert len(own_words("z" * 2_000)) <= MAX_TEXT_LENGTH
    with pytest.raises(InvalidRequest, match="reason is 501 characters long; the limit is 500"):
        compose_text("ours", persons + "!")
