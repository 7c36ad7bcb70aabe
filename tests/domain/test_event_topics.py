"""Stored events name their class by topic: splitting domain.payment (#13) moved the refund
approval workflow to domain.refund_approval but left every event class where stored events
say it is; the events given typed values (#13) keep theirs too."""

from __future__ import annotations

from eventsourcing.utils import get_topic, resolve_topic

from domain.cashups import CashUp
from domain.imports import ImportBatch
from domain.payment import Payment

STORED_PAYMENT_EVENTS = (
    "Received",
    "Allocated",
    "Transferred",
    "Refunded",
    "RefundRequested",
    "RefundDeclined",
    "Reversed",
    "ReversalUndone",
    "Noted",
    "ProviderReported",
    "PayerDetailsErased",
    "FeeCharged",
    "Settled",
    "SettlementUndone",
    "DisputeOpened",
    "DisputeMoved",
)


def test_every_payment_event_keeps_the_topic_stored_events_name() -> None:
    for name in STORED_PAYMENT_EVENTS:
        event_class = getattr(Payment, name)
        assert get_topic(event_class) == f"domain.payment:Payment.{name}"
        assert resolve_topic(f"domain.payment:Payment.{name}") is event_class


def test_events_with_typed_lines_keep_the_topics_stored_events_name() -> None:
    for event_class, topic in (
        (CashUp.Submitted, "domain.cashups:CashUp.Submitted"),
        (CashUp.Approved, "domain.cashups:CashUp.Approved"),
        (ImportBatch.Imported, "domain.imports:ImportBatch.Imported"),
    ):
        assert get_topic(event_class) == topic
        assert resolve_topic(topic) is event_class
