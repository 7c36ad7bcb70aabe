"""An event stored by an older release loads as the current class (issue #13).

When an event's fields change, the event class gets `class_version = N` and a static
`upcast_vK_vK+1(state)` for each step; eventsourcing applies them to the stored state as it
reads, so stored events are never rewritten. The ledger's own events have needed none yet
(fields added so far have defaults), so this test's aggregate shows the procedure that
docs/operations.md describes, in the ledger's event store on both backends.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from domain.money import pounds_to_pence


class Deposit(Aggregate):
    """A deposit in release N+1. Release N recorded `Made` with `amount`, pounds as text;
    N+1 keeps integer pence, as everything inside the ledger."""

    class Made(Aggregate.Created):
        class_version = 2
        amount_pence: int

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["amount_pence"] = pounds_to_pence(state.pop("amount"))

    @event(Made)
    def __init__(self, amount_pence: int) -> None:
        self.amount_pence = amount_pence


def test_an_event_stored_at_v1_loads_as_v2(empty_ledger) -> None:
    ledger = empty_ledger
    deposit_id = uuid4()
    # The row as release N wrote it: the same topics, the amount in pounds, no class_version.
    v1_state = {
        "timestamp": datetime(2026, 3, 31, 9, 30, tzinfo=UTC),
        "originator_topic": get_topic(Deposit),
        "amount": "12.50",
    }
    stored = StoredEvent(
        deposit_id, 1, get_topic(Deposit.Made), ledger.mapper.transcoder.encode(v1_state)
    )
    ledger.recorder.insert_events([stored])

    loaded = ledger.repository.get(deposit_id)
    assert isinstance(loaded, Deposit) and loaded.amount_pence == 1250
    assert not hasattr(loaded, "amount")
    (row,) = ledger.recorder.select_events(deposit_id)
    assert bytes(row.state) == stored.state, "reading never rewrites the stored event"


def test_an_event_stored_at_v2_keeps_its_version(empty_ledger) -> None:
    ledger = empty_ledger
    new = Deposit(amount_pence=999)
    ledger.save(new)
    (row,) = ledger.recorder.select_events(new.id)
    assert b'"class_version":2' in row.state.replace(b" ", b"")
    assert ledger.repository.get(new.id).amount_pence == 999
