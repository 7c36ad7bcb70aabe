"""A statement credit line that only two or three earlier imported files of one source make
together (Allpay's Friday, Saturday and Sunday files settled as one credit on Monday) is
offered to a person, never linked by a run (application.reconciliation
Matcher.files_together); on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import combinations
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from application.imports import get_import, import_file, reverse_import
from application.reconciliation import (
    COMBINED_FILES,
    COMBINED_FILES_DAYS,
    COMBINED_FILES_PER_DAY,
    IMPORTS_TOGETHER,
    Books,
    Matcher,
    Receipt,
    choose_link,
    exceptions,
    exceptions_csv,
    link_after_recording,
    link_counted_twice,
    unlink_line,
)
from domain.errors import InvalidRequest, LineNeedsAChoice, NotACandidate
from tests.application.test_choosing_statement_links import SUPERVISOR
from tests.application.test_imports import allpay_file, allpay_line, csv_file
from tests.application.test_late_statement_links import OFFICER, counted_pence
from tests.application.test_statement_imports import TODAY, camt, entry
from tests.domain.helpers import CT_REF

WHY = "Allpay settles the weekend's files on Monday"
FRIDAY, SATURDAY, SUNDAY = (TODAY - timedelta(days=n) for n in (3, 2, 1))


def weekend_file(ledger, day: date, *amounts: str, name: str | None = None) -> UUID:
    lines = (allpay_line(CT_REF, amount, day=day.strftime("%d/%m/%Y")) for amount in amounts)
    name = name or f"allpay-{day}.txt"
    return import_file(ledger, allpay_file(*lines), OFFICER, file_name=name).batch_id


def weekend(ledger) -> list[UUID]:
    """Friday's file of 7.00 (two receipts), Saturday's of 5.00, Sunday's of 2.50."""
    return [
        weekend_file(ledger, FRIDAY, "3.00", "4.00"),
        weekend_file(ledger, SATURDAY, "5.00"),
        weekend_file(ledger, SUNDAY, "2.50"),
    ]


def monday(ledger, amount: str = "14.50", name: str = "monday.xml") -> UUID:
    content = camt(entry(amount, ref=name.split(".")[0][:16], text="ALLPAY LTD"))
    return import_file(ledger, content, OFFICER, file_name=name).batch_id


def receipts_of(ledger, batch_id: UUID) -> list[str]:
    return [line["payment_id"] for line in get_import(ledger, batch_id)["lines"]]


def waiting(ledger) -> dict[int, list[dict]]:
    return {
        row["line"]: row["candidates"] for row in exceptions(ledger)["unmatched_statement_lines"]
    }


def test_a_weekends_three_files_are_offered_for_the_monday_line_and_chosen(ledger):
    files = weekend(ledger)
    statement = monday(ledger)
    (line,) = get_import(ledger, statement)["lines"]
    assert line["outcome"] == "recorded"  # no run links it: its own receipt, in suspense
    (candidate,) = line["candidates"]
    paid_in = sorted(pid for batch_id in files for pid in receipts_of(ledger, batch_id))
    assert candidate["rule"] == IMPORTS_TOGETHER
    assert candidate["payment_ids"] == paid_in
    assert candidate["days"] == [FRIDAY.isoformat(), SATURDAY.isoformat(), SUNDAY.isoformat()]
    assert candidate["files"] == [
        {"batch_id": str(batch_id), "file_name": f"allpay-{day}.txt", "day": day.isoformat()}
        for batch_id, day in zip(files, (FRIDAY, SATURDAY, SUNDAY), strict=True)
    ]
    assert f"imports {files[0]} of {FRIDAY}, {files[1]} of {SATURDAY}" in candidate["matched"]
    assert waiting(ledger) == {1: [candidate]}  # the report offers the same

    # A run never links it, after new money or when asked for the line.
    assert link_counted_twice(ledger, OFFICER) == []
    assert link_after_recording(ledger, FRIDAY) == []
    with pytest.raises(LineNeedsAChoice, match="only together") as refused:
        link_counted_twice(ledger, OFFICER, (statement, 1))
    assert candidate["payment_id"] in refused.value.message
    assert counted_pence(ledger) == 1_450 + 1_450

    saturdays = receipts_of(ledger, files[1])[0]
    (late,) = choose_link(ledger, SUPERVISOR, statement, 1, saturdays, WHY)
    assert late.link.rule == IMPORTS_TOGETHER
    assert late.link.matched_batch_ids == tuple(str(batch_id) for batch_id in files)
    assert sorted(late.link.matched_payment_ids) == paid_in
    (linked,) = [e for _, e in ledger.read_events() if type(e).__name__ == "LineLinked"]
    assert linked.actor == SUPERVISOR.actor and linked.reason.endswith(
        f"(imports_together), recorded after the statement; chosen by a person: {WHY}"
    )
    report = exceptions(ledger)
    assert report["unmatched_statement_lines"] == [] and report["unmatched_receipts"] == []
    assert counted_pence(ledger) == 1_450
    shown = get_import(ledger, statement)["lines"][0]
    assert shown["late_link"]["matched_batch_ids"] == [str(batch_id) for batch_id in files]

    # Undone like any late link: the line counts again and the files wait again.
    (undone,) = unlink_line(ledger, statement, 1, OFFICER, "the weekend went in on Tuesday")
    assert undone.link.rule == IMPORTS_TOGETHER and undone.restored_payment_id is not None
    assert counted_pence(ledger) == 1_450 + 1_450
    assert [c["payment_ids"] for c in waiting(ledger)[1]] == [paid_in]
    assert link_counted_twice(ledger, OFFICER) == []  # still never a run's


def test_once_chosen_the_files_are_nobody_elses_and_a_linked_file_is_not_offered(ledger):
    files = weekend(ledger)
    first, second = monday(ledger), monday(ledger, name="monday-again.xml")
    assert set(waiting(ledger)) == {1}  # both statements' line 1 (one batch each)
    rows = exceptions(ledger)["unmatched_statement_lines"]
    assert [len(row["candidates"]) for row in rows] == [1, 1]
    saturdays = receipts_of(ledger, files[1])[0]
    choose_link(ledger, OFFICER, first, 1, saturdays, WHY)
    (row,) = exceptions(ledger)["unmatched_statement_lines"]
    assert (row["batch_id"], row["candidates"]) == (str(second), [])
    assert get_import(ledger, second)["lines"][0]["candidates"] == []

    # Two more files: with each other they are offered, never with a file linked already.
    weekend_file(ledger, FRIDAY, "1.00", name="friday-late.txt")
    weekend_file(ledger, SATURDAY, "6.00", name="saturday-late.txt")
    seven = monday(ledger, "7.00", name="seven.xml")  # 1.00 + 6.00, or Friday's linked 7.00
    three_fifty = monday(ledger, "3.50", name="three.xml")  # 1.00 + Sunday's linked 2.50
    rows = {row["batch_id"]: row for row in exceptions(ledger)["unmatched_statement_lines"]}
    assert [[f["file_name"] for f in c["files"]] for c in rows[str(seven)]["candidates"]] == [
        ["friday-late.txt", "saturday-late.txt"]
    ]
    assert rows[str(three_fifty)]["candidates"] == []


def test_reversed_far_apart_or_mixed_format_files_are_not_offered(ledger):
    weekend_file(ledger, FRIDAY, "5.00")
    saturday = weekend_file(ledger, SATURDAY, "5.00")
    reverse_import(ledger, saturday, SUPERVISOR, "sent twice")
    # A CSV file of the same channel and amount on Saturday is of another source.
    content = csv_file(f"allpay,5.00,{CT_REF},{SATURDAY.isoformat()},x-1,")
    import_file(
        ledger, content, OFFICER, file_name="sat.csv", expect_total_pence=500, expect_count=1
    )
    # Files of the line's window COMBINED_FILES_DAYS + 1 days apart: too far apart.
    weekend_file(ledger, TODAY - timedelta(days=COMBINED_FILES_DAYS + 1), "4.00")
    weekend_file(ledger, TODAY, "6.00")
    monday(ledger, "10.00")
    assert waiting(ledger)[1] == []
    monday(ledger, "11.00", name="eleven.xml")  # Friday's 5.00 and Monday's 6.00 are near
    rows = exceptions(ledger)["unmatched_statement_lines"]
    assert [len(row["candidates"]) for row in rows] == [0, 1]


def test_a_set_of_files_is_listed_once_beside_the_lines_other_candidates(ledger):
    # Two receipts of 12.00 make the line wait for a person anyway; Friday's 7.00 and
    # Saturday's 5.00 make it too, once, whichever file the search starts from.
    for reference in ("x1", "x2"):
        content = csv_file(f"card,12.00,{reference},{SUNDAY.isoformat()},{reference},")
        import_file(
            ledger,
            content,
            OFFICER,
            file_name=f"{reference}.csv",
            expect_total_pence=1_200,
            expect_count=1,
        )
    friday = weekend_file(ledger, FRIDAY, "7.00")
    saturday = weekend_file(ledger, SATURDAY, "5.00")
    statement = monday(ledger, "12.00")
    candidates = waiting(ledger)[1]
    together = [c for c in candidates if c["rule"] == IMPORTS_TOGETHER]
    assert [[f["batch_id"] for f in c["files"]] for c in together] == [[str(friday), str(saturday)]]
    assert len({tuple(c["payment_ids"]) for c in candidates}) == len(candidates)
    assert get_import(ledger, statement)["lines"][0]["candidates"] == candidates
    fridays = receipts_of(ledger, friday)[0]
    (late,) = choose_link(ledger, OFFICER, statement, 1, fridays, WHY)
    assert late.link.matched_batch_ids == (str(friday), str(saturday))


def test_a_day_of_more_files_than_the_bound_is_left_out(ledger):
    for n in range(COMBINED_FILES_PER_DAY + 1):
        weekend_file(ledger, SATURDAY, f"{n + 1}.00", name=f"sat-{n}.txt")
    weekend_file(ledger, SUNDAY, "10.00")
    monday(ledger, "11.00")  # Sunday's 10.00 with any of Saturday's: that day has too many
    assert waiting(ledger)[1] == []


# ---- the search alone, no database ---------------------------------------------------------

BOOKED = date(2026, 11, 30)  # a Monday


@st.composite
def imported_files(draw) -> Books:
    books = Books()
    for index in range(draw(st.integers(0, 9))):
        batch_id = f"b{index}"
        day = BOOKED - timedelta(days=draw(st.integers(0, 7)))
        amounts = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))
        ids = [f"{batch_id}-{n}" for n in range(len(amounts))]
        for payment_id, pence in zip(ids, amounts, strict=True):
            books.receipts[payment_id] = Receipt(payment_id, "allpay", pence, day, "R")
        books.batches[batch_id] = ids
        books.import_files[batch_id] = (f"{batch_id}.txt", draw(st.sampled_from(["allpay", "csv"])))
    return books


def expected_sets(books: Books, pence: int) -> set[frozenset[str]]:
    """Every set the rule describes, by brute force over all the files."""
    day = {f: max(books.receipts[p].received_on for p in ids) for f, ids in books.batches.items()}
    source = {f: books.import_files[f][1] for f in books.batches}
    crowded = {
        (source[f], day[f])
        for f in books.batches
        if sum(1 for g in books.batches if (source[g], day[g]) == (source[f], day[f]))
        > COMBINED_FILES_PER_DAY
    }
    found = set()
    for size in range(2, COMBINED_FILES + 1):
        for files in combinations(sorted(books.batches), size):
            days = sorted(day[f] for f in files)
            receipts = [books.receipts[p] for f in files for p in books.batches[f]]
            if (
                len(set(days)) == size
                and len({source[f] for f in files}) == 1
                and not any((source[f], day[f]) in crowded for f in files)
                and (days[-1] - days[0]).days <= COMBINED_FILES_DAYS
                and all(BOOKED - timedelta(days=5) <= r.received_on <= BOOKED for r in receipts)
                and sum(r.amount_pence for r in receipts) == pence
            ):
                found.add(frozenset(files))
    return found


@given(imported_files(), st.integers(1, 20))
def test_the_sets_offered_are_exactly_the_rules_each_once_in_day_order(books, pence):
    offered = Matcher(books).files_together(BOOKED, pence)
    sets = [frozenset(link.matched_batch_ids) for link in offered]
    assert len(sets) == len(set(sets)) and set(sets) == expected_sets(books, pence)
    for link in offered:
        days = [
            max(books.receipts[pid].received_on for pid in books.batches[f])
            for f in link.matched_batch_ids
        ]
        assert days == sorted(days)
        paid_in = [pid for f in link.matched_batch_ids for pid in books.batches[f]]
        assert link.rule == IMPORTS_TOGETHER and sorted(link.matched_payment_ids) == sorted(paid_in)


def test_reversing_one_of_the_files_chosen_undoes_the_link(ledger):
    files = weekend(ledger)
    statement = monday(ledger)
    choose_link(ledger, OFFICER, statement, 1, receipts_of(ledger, files[2])[0], WHY)
    assert counted_pence(ledger) == 1_450
    reverse_import(ledger, files[1], SUPERVISOR, "Saturday's file was sent twice")
    shown = get_import(ledger, statement)["lines"][0]
    assert shown["late_link"] is None
    assert [undone["rule"] for undone in shown["undone_links"]] == [IMPORTS_TOGETHER]
    # The line counts again; Saturday's money is gone; Friday's and Sunday's wait.
    assert counted_pence(ledger) == 1_450 + 700 + 250
    assert waiting(ledger) == {1: []}


def test_files_of_long_names_are_chosen_undone_and_reversed_with_a_persons_reason(ledger):
    # Real files' names are long; the words of the link go into the reasons and notes
    # recorded with it (500 characters at most), with the person's own reason: a set of
    # three files named so must still be chosen, undone and reversed with a sentence of why.
    files = [
        weekend_file(ledger, day, amount, name=f"ALLPAY-COUNCIL-TAX-SETTLEMENT-{day:%Y%m%d}.txt")
        for day, amount in ((FRIDAY, "7.00"), (SATURDAY, "5.00"), (SUNDAY, "2.50"))
    ]
    statement = monday(ledger, name="BARCLAYS-CAMT053-20261130.xml")
    why = (
        "Allpay's client services confirmed by email on Tuesday that Friday's, Saturday's and "
        "Sunday's files were settled as this one credit"
    )
    saturdays = receipts_of(ledger, files[1])[0]
    (late,) = choose_link(ledger, SUPERVISOR, statement, 1, saturdays, why)
    assert late.link.matched_batch_ids == tuple(str(batch_id) for batch_id in files)
    assert counted_pence(ledger) == 1_450
    unlink_line(ledger, statement, 1, OFFICER, why.replace("confirmed", "denied"))
    assert counted_pence(ledger) == 1_450 + 1_450
    choose_link(ledger, SUPERVISOR, statement, 1, saturdays, why)
    reverse_import(
        ledger, files[1], SUPERVISOR, "Allpay sent Saturday's file twice: this copy goes"
    )
    assert get_import(ledger, statement)["lines"][0]["late_link"] is None
    assert counted_pence(ledger) == 1_450 + 700 + 250


def test_three_files_of_one_total_make_three_pairs_each_chosen_by_its_key(ledger):
    """Friday's, Saturday's and Sunday's files of 5.00 each and a Monday line of 10.00: three
    pairs, each receipt in two of them, so no receipt names one pair (payment_id None).
    Each pair has its own candidate key, the same on the report, the import's view and in a
    refusal; a person chooses the Saturday and Sunday pair by it. A key naming nothing
    offered, or naming both a key and a receipt, or neither, is refused, storing nothing."""
    files = [weekend_file(ledger, day, "5.00") for day in (FRIDAY, SATURDAY, SUNDAY)]
    statement = monday(ledger, "10.00")
    (line,) = get_import(ledger, statement)["lines"]
    pairs = [[f["batch_id"] for f in c["files"]] for c in line["candidates"]]
    assert pairs == [[str(a), str(b)] for a, b in combinations(files, 2)]
    assert [c["payment_id"] for c in line["candidates"]] == [None, None, None]
    keys = [c["candidate"] for c in line["candidates"]]
    assert len(set(keys)) == 3 and waiting(ledger) == {1: line["candidates"]}
    assert all(f"candidate {key}" in exceptions_csv(exceptions(ledger)) for key in keys)
    with pytest.raises(LineNeedsAChoice) as refused:
        link_counted_twice(ledger, OFFICER, (statement, 1))
    assert all(f"candidate {key}" in refused.value.message for key in keys)

    saturdays = receipts_of(ledger, files[1])[0]
    before = ledger.max_position()
    with pytest.raises(NotACandidate, match="more than one of what line 1"):
        choose_link(ledger, OFFICER, statement, 1, saturdays, WHY)
    with pytest.raises(NotACandidate, match="candidate 0123456789ab is not among"):
        choose_link(ledger, OFFICER, statement, 1, None, WHY, candidate="0123456789ab")
    with pytest.raises(InvalidRequest, match="not both"):
        choose_link(ledger, OFFICER, statement, 1, saturdays, WHY, candidate=keys[2])
    with pytest.raises(InvalidRequest, match="not neither"):
        choose_link(ledger, OFFICER, statement, 1, " ", WHY)
    assert ledger.max_position() == before

    (late,) = choose_link(ledger, SUPERVISOR, statement, 1, None, WHY, candidate=keys[2].upper())
    assert late.link.rule == IMPORTS_TOGETHER
    assert late.link.matched_batch_ids == (str(files[1]), str(files[2]))
    assert counted_pence(ledger) == 1_000 + 500  # the line once, Friday's file waiting
    assert [row["payment_id"] for row in exceptions(ledger)["unmatched_receipts"]] == (
        receipts_of(ledger, files[0])
    )
    # Undone, the same pairs are offered under the same keys.
    unlink_line(ledger, statement, 1, OFFICER, "Friday's went in with Saturday's")
    assert [c["candidate"] for c in waiting(ledger)[1]] == keys
    (again,) = choose_link(ledger, SUPERVISOR, statement, 1, None, WHY, candidate=keys[0])
    assert again.link.matched_batch_ids == (str(files[0]), str(files[1]))
