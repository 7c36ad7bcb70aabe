"""The stored exceptions books (BooksFold.to_snapshot) are read back only in the format
they were written in: BOOKS_SNAPSHOT_FORMAT, bumped by hand. A change to what the fold
keeps (its fields, the records it keeps, the events it folds, their class versions) or
makes of an event (apply and the helpers it calls), without a bump, would load books of
the old shape, or folded by the old rules, as if they were the new; and each process
then stores books continued from them, so the difference from a fresh fold never goes.
This pins a fingerprint of all of that to the format: a change fails here until the
format is bumped (or the change is shown to leave stored books right) and the new
fingerprint pinned."""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import fields

from eventsourcing.utils import get_topic

from application import reconciliation
from application.reconciliation import (
    BOOKS_SNAPSHOT_FORMAT,
    BooksFold,
    FoldedStatement,
    Receipt,
)
from domain.imports import StatementLink
from domain.payment import clearing_moves

# BOOKS_SNAPSHOT_FORMAT -> the fingerprint of the fold it names
FINGERPRINTS = {
    1: "ba2191f7b17775eb",
    2: "eca7b1cf8eec8b53",
    3: "eca7b1cf8eec8b53",
    4: "e4b9ab038b771e3f",
    5: "3df6a0f05acc48f1",
    6: "d5dd6754fbf275bb",
    # (7 as first pinned: "c399c67ad2dafdf7"; its reader then made faster, the same books
    # of the same data: orjson, receipts as tuples, tenth session, issue #10)
    7: "5354017067926bb6",
    8: "c596ff82a72107cb",
    # 9: a file's content claim folded for its position only (the same books otherwise)
    9: "6c634b8d5ba45f49",
}


def fold_shape() -> list[str]:
    shape = [f"BooksFold.{name}" for name in vars(BooksFold())]
    shape += [f"Receipt.{name}" for name in Receipt._fields]  # (a NamedTuple)
    for record in (FoldedStatement, StatementLink):
        shape += [f"{record.__name__}.{field.name}" for field in fields(record)]
    shape += [f"{get_topic(cls)} v{getattr(cls, 'class_version', 1)}" for cls in BooksFold.TOPICS]
    return shape


def fold_rules() -> list[str]:
    return [
        inspect.getsource(function)
        for function in (
            BooksFold.read,
            BooksFold.apply,
            BooksFold.settle,
            BooksFold._pays_in,
            BooksFold._statement_reversed,
            BooksFold.to_snapshot,
            BooksFold.from_snapshot,
            reconciliation._receipt,
            reconciliation._add_dispute,
            reconciliation._add_clearing,
            reconciliation._is_paid_in_note,
            reconciliation._from_suspense,
            reconciliation._taken_back,
            reconciliation._receipt_data,
            reconciliation._receipt_from,
            clearing_moves,
        )
    ]


def fingerprint() -> str:
    text = "\n".join(fold_shape() + fold_rules())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_the_fold_is_the_one_its_snapshot_format_names() -> None:
    assert fingerprint() == FINGERPRINTS.get(BOOKS_SNAPSHOT_FORMAT), (
        "BooksFold's shape or rules changed: bump reconciliation.BOOKS_SNAPSHOT_FORMAT "
        "(stored books of the old format are then folded afresh) and pin "
        f"{BOOKS_SNAPSHOT_FORMAT + 1}: {fingerprint()!r} in FINGERPRINTS here"
    )
