"""The daily cash-up (eReturns) of one office's till: what was counted against what was
recorded, the difference to over/short, and a second person's approval.

An officer counts the till at the end of a UK business day: notes and coins by
denomination, the cheques one by one, and the bag the money is banked in. The ledger compares
each counted channel (cash, cheque) with the receipts recorded for that office, till and
channel that day; a difference needs a reason. A supervisor who is not the submitter then
approves it, which is final and moves the difference between the channel's cash account and
its over/short account (domain.postings), or returns it with a reason to be counted and
submitted again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.cards import require_text
from domain.errors import (
    CashUpAlreadyApproved,
    CashUpAwaitingDecision,
    CashUpNotAwaitingDecision,
    InvalidRequest,
    ReasonRequired,
    SecondPersonRequired,
)
from domain.funds import LEDGER_NAMESPACE
from domain.idempotent import is_repeat_command
from domain.limits import EARLIEST_BUSINESS_MOMENT, uk_day_start
from domain.money import pounds_text
from domain.payment import Channel

NOTES_PENCE = (5000, 2000, 1000, 500)
COINS_PENCE = (200, 100, 50, 20, 10, 5, 2, 1)
DENOMINATIONS_PENCE = NOTES_PENCE + COINS_PENCE
COUNTED_CHANNELS = (Channel.CASH.value, Channel.CHEQUE.value)
# Limits on one till's day: far above any real count, low enough to keep sums exact.
MAX_PIECES = 1_000_000
MAX_CHEQUES = 200
MAX_CHEQUE_PENCE = 100_000_000
MAX_BAG_NUMBER_LENGTH = 30
MAX_CHEQUE_TEXT_LENGTH = 100


def denomination_name(pence: int) -> str:
    """£50, £1, 20p: as printed on the money."""
    return f"£{pence // 100}" if pence >= 100 else f"{pence}p"


def _amount_name(pence: int) -> str:
    """What a person typed as a note or coin: 3p, £3, £2.50."""
    if pence < 100:
        return f"{pence}p"
    return f"£{pence // 100}" if pence % 100 == 0 else pounds_text(pence)


def difference_words(difference_pence: int) -> str:
    if difference_pence > 0:
        return f"over by {pounds_text(difference_pence)}"
    if difference_pence < 0:
        return f"short by {pounds_text(-difference_pence)}"
    return "balanced"


@dataclass(frozen=True)
class Cheque:
    amount_pence: int
    drawer: str
    reference: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "amount_pence": self.amount_pence,
            "drawer": self.drawer,
            "reference": self.reference,
        }


@dataclass(frozen=True)
class Count:
    """What a till holds at the end of its day, as an officer counted it."""

    office_code: str
    till_code: str
    business_date: date
    pieces: Mapping[int, int]  # denomination (pence) -> how many notes or coins
    cheques: tuple[Cheque, ...]
    bag_number: str

    @property
    def cash_pence(self) -> int:
        return sum(pence * self.pieces.get(pence, 0) for pence in DENOMINATIONS_PENCE)

    @property
    def cheques_pence(self) -> int:
        return sum(cheque.amount_pence for cheque in self.cheques)

    def counted_pence(self, channel: str) -> int:
        return self.cash_pence if channel == Channel.CASH.value else self.cheques_pence

    def checked(self, today: date) -> Count:
        """The count, refused (saying what to fix) when it cannot be a till's day."""
        if self.business_date > today:
            raise InvalidRequest(
                f"the cash-up date {self.business_date.isoformat()} is in the future: a till "
                "is counted at the end of its day"
            )
        if self.business_date < EARLIEST_BUSINESS_MOMENT.date():
            raise InvalidRequest("the cash-up date is before 2000: check the year")
        for pence, pieces in self.pieces.items():
            if pence not in DENOMINATIONS_PENCE:
                raise InvalidRequest(
                    f"{_amount_name(pence)} is not a UK note or coin: count notes of "
                    f"{', '.join(map(denomination_name, NOTES_PENCE))} and coins of "
                    f"{', '.join(map(denomination_name, COINS_PENCE))}"
                )
            if not 0 <= pieces <= MAX_PIECES:
                raise InvalidRequest(
                    f"the count of {denomination_name(pence)} must be a whole number from 0 "
                    f"to {MAX_PIECES}"
                )
        if len(self.cheques) > MAX_CHEQUES:
            raise InvalidRequest(f"a cash-up lists at most {MAX_CHEQUES} cheques")
        cheques = tuple(_checked_cheque(number, c) for number, c in enumerate(self.cheques, 1))
        bag = require_text("bag number", self.bag_number, required=False)
        if not bag:
            raise InvalidRequest("the bag number is required: the number on the banking bag")
        if len(bag) > MAX_BAG_NUMBER_LENGTH:
            raise InvalidRequest(f"the bag number has at most {MAX_BAG_NUMBER_LENGTH} characters")
        pieces = {pence: self.pieces.get(pence, 0) for pence in DENOMINATIONS_PENCE}
        return Count(self.office_code, self.till_code, self.business_date, pieces, cheques, bag)


def _checked_cheque(number: int, cheque: Cheque) -> Cheque:
    if not 0 < cheque.amount_pence <= MAX_CHEQUE_PENCE:
        raise InvalidRequest(
            f"cheque {number}: the amount must be more than £0.00 and at most "
            f"{pounds_text(MAX_CHEQUE_PENCE)}"
        )
    drawer = require_text(f"cheque {number} drawer", cheque.drawer, required=False)
    reference = require_text(f"cheque {number} reference", cheque.reference, required=False)
    if not drawer:
        raise InvalidRequest(f"cheque {number}: the drawer (who wrote it) is required")
    if max(len(drawer), len(reference)) > MAX_CHEQUE_TEXT_LENGTH:
        raise InvalidRequest(
            f"cheque {number}: drawer and reference have at most {MAX_CHEQUE_TEXT_LENGTH} "
            "characters"
        )
    return Cheque(cheque.amount_pence, drawer, reference)


@dataclass(frozen=True)
class ChannelResult:
    """One counted channel of a cash-up: counted against recorded.

    Cash-up events store it as a plain dict (`to_dict`), the form every stored event has.
    """

    channel: str
    counted_pence: int
    recorded_pence: int

    @property
    def difference_pence(self) -> int:
        """Over (positive) or short (negative)."""
        return self.counted_pence - self.recorded_pence

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "counted_pence": self.counted_pence,
            "recorded_pence": self.recorded_pence,
            "difference_pence": self.difference_pence,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChannelResult:
        """A stored line; its difference is derived again, so it is checked against what
        was stored (the two places an invariant is asserted)."""
        result = cls(data["channel"], data["counted_pence"], data["recorded_pence"])
        assert result.difference_pence == data["difference_pence"], data
        return result


def channel_results_from(stored: list[dict[str, Any]]) -> tuple[ChannelResult, ...]:
    return tuple(ChannelResult.from_dict(line) for line in stored)


def compare(
    count: Count, recorded_pence: Mapping[str, int], channels: tuple[str, ...]
) -> list[ChannelResult]:
    """Each counted channel the office takes, counted against what was recorded."""
    taken = [channel for channel in COUNTED_CHANNELS if channel in channels]
    if count.cheques and Channel.CHEQUE.value not in taken:
        raise InvalidRequest(f"office {count.office_code} does not take cheques: list none")
    if count.cash_pence and Channel.CASH.value not in taken:
        raise InvalidRequest(f"office {count.office_code} does not take cash: count none")
    return [
        ChannelResult(channel, count.counted_pence(channel), recorded_pence.get(channel, 0))
        for channel in taken
    ]


def cashup_id(office_code: str, till_code: str, business_date: date) -> UUID:
    """One cash-up per till per day: a second submission is the same record, again."""
    return uuid5(LEDGER_NAMESPACE, f"cashup/{office_code}/{till_code}/{business_date}")


class CashUpStatus(StrEnum):
    SUBMITTED = "submitted"
    RETURNED = "returned"
    APPROVED = "approved"


class CashUp(Aggregate):
    """One till's cash-up for one day, from its first submission to its approval."""

    class Event(Aggregate.Event):
        actor: str
        idempotency_key: str | None
        fingerprint: str | None

        def apply(self, cashup: CashUp) -> None:
            if self.idempotency_key:
                cashup.commands[self.idempotency_key] = self.fingerprint or ""

    class Started(Aggregate.Created):
        office_code: str
        till_code: str
        business_date: str  # ISO: the stored form needs no special transcoding
        actor: str
        idempotency_key: str | None
        fingerprint: str | None

    class Submitted(Event):
        pieces: list[dict[str, int]]
        cheques: list[dict[str, Any]]
        bag_number: str
        # Stored as plain dicts (ChannelResult.to_dict); read them as `channel_results`.
        lines: list[dict[str, Any]]
        reason: str
        effective_at: datetime

        @property
        def channel_results(self) -> tuple[ChannelResult, ...]:
            return channel_results_from(self.lines)

        def apply(self, cashup: CashUp) -> None:
            super().apply(cashup)
            cashup.status = CashUpStatus.SUBMITTED
            cashup.submission = self
            cashup.submitted_by = self.actor
            cashup.history.append(_step("submitted", self, self.reason))

    class Approved(Event):
        """Final: moves each counted channel's difference to its over/short account."""

        office_code: str
        till_code: str
        # Stored as plain dicts (ChannelResult.to_dict); read them as `channel_results`.
        lines: list[dict[str, Any]]
        submitted_by: str
        effective_at: datetime

        @property
        def channel_results(self) -> tuple[ChannelResult, ...]:
            return channel_results_from(self.lines)

        def apply(self, cashup: CashUp) -> None:
            super().apply(cashup)
            cashup.status = CashUpStatus.APPROVED
            cashup.decided_by = self.actor
            cashup.history.append(_step("approved", self, ""))

    class Returned(Event):
        reason: str

        def apply(self, cashup: CashUp) -> None:
            super().apply(cashup)
            cashup.status = CashUpStatus.RETURNED
            cashup.decided_by = self.actor
            cashup.history.append(_step("returned", self, self.reason))

    def __init__(
        self,
        office_code: str,
        till_code: str,
        business_date: str,
        actor: str,
        idempotency_key: str | None,
        fingerprint: str | None,
    ) -> None:
        self.office_code = office_code
        self.till_code = till_code
        self.business_date = date.fromisoformat(business_date)
        self.status = CashUpStatus.SUBMITTED
        self.submission: CashUp.Submitted | None = None
        self.submitted_by = actor
        self.decided_by: str | None = None
        self.history: list[dict[str, str]] = []
        self.commands: dict[str, str] = {}

    @classmethod
    def start(cls, office_code: str, till_code: str, business_date: date, actor: str) -> CashUp:
        return cls._create(
            cls.Started,
            id=cashup_id(office_code, till_code, business_date),
            office_code=office_code,
            till_code=till_code,
            business_date=business_date.isoformat(),
            actor=actor,
            idempotency_key=None,
            fingerprint=None,
        )

    @property
    def results(self) -> tuple[ChannelResult, ...]:
        assert self.submission is not None
        return self.submission.channel_results

    def submit(
        self,
        count: Count,
        results: list[ChannelResult],
        *,
        actor: str,
        reason: str = "",
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
    ) -> None:
        """Submit the count (again, once returned). A repeat of the submission waiting for a
        decision records nothing."""
        if self._is_repeat(idempotency_key, fingerprint):
            return
        if self.status is CashUpStatus.APPROVED:
            raise CashUpAlreadyApproved(
                f"the cash-up of {self._name()} was approved by {self.decided_by}: it is final"
            )
        waiting = self.submission is not None and self.status is CashUpStatus.SUBMITTED
        if waiting and fingerprint is not None and self.submission.fingerprint == fingerprint:
            return
        if waiting:
            raise CashUpAwaitingDecision(
                f"the cash-up of {self._name()} was submitted by {self.submitted_by} and waits "
                "for a supervisor; it can be submitted again once returned"
            )
        off = [r for r in results if r.difference_pence]
        reason = require_text("reason", reason, required=False)
        if off and not reason:
            raise ReasonRequired(
                "a reason is required when the count differs from what was recorded: "
                + "; ".join(f"{r.channel} {difference_words(r.difference_pence)}" for r in off)
            )
        self.trigger_event(
            self.Submitted,
            pieces=[
                {"denomination_pence": pence, "count": pieces}
                for pence, pieces in count.pieces.items()
            ],
            cheques=[cheque.to_dict() for cheque in count.cheques],
            bag_number=count.bag_number,
            lines=[r.to_dict() for r in results],
            reason=reason,
            effective_at=uk_day_start(self.business_date),
            actor=actor,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
        )

    def approve(
        self, *, actor: str, idempotency_key: str | None = None, fingerprint: str | None = None
    ) -> None:
        if self._is_repeat(idempotency_key, fingerprint):
            return
        self._require_decidable(actor, "approve")
        self.trigger_event(
            self.Approved,
            office_code=self.office_code,
            till_code=self.till_code,
            lines=[r.to_dict() for r in self.results],
            submitted_by=self.submitted_by,
            effective_at=uk_day_start(self.business_date),
            actor=actor,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
        )

    def send_back(
        self,
        *,
        actor: str,
        reason: str,
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
    ) -> None:
        """Return it to be counted and submitted again, saying why."""
        if self._is_repeat(idempotency_key, fingerprint):
            return
        self._require_decidable(actor, "return")
        self.trigger_event(
            self.Returned,
            reason=require_text("reason", reason, required=True),
            actor=actor,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
        )

    def _require_decidable(self, actor: str, verb: str) -> None:
        if self.status is CashUpStatus.APPROVED:
            raise CashUpAlreadyApproved(
                f"the cash-up of {self._name()} was approved by {self.decided_by}: it is final"
            )
        if self.status is not CashUpStatus.SUBMITTED:
            raise CashUpNotAwaitingDecision(
                f"the cash-up of {self._name()} was returned by {self.decided_by}; it waits "
                "to be submitted again"
            )
        if actor == self.submitted_by:
            raise SecondPersonRequired(
                f"a cash-up needs a second person: {actor} submitted it, so cannot {verb} it"
            )

    def _is_repeat(self, idempotency_key: str | None, fingerprint: str | None) -> bool:
        return is_repeat_command(self.commands, idempotency_key, fingerprint, "cash-up")

    def _name(self) -> str:
        return f"office {self.office_code} till {self.till_code} on {self.business_date}"

    def view(self) -> dict[str, Any]:
        """The cash-up as plain values: the count, the comparison, where it stands."""
        submission = self.submission
        assert submission is not None
        return {
            "cashup_id": str(self.id),
            "office_code": self.office_code,
            "till_code": self.till_code,
            "business_date": self.business_date.isoformat(),
            "status": self.status.value,
            "submitted_by": self.submitted_by,
            "submitted_at": submission.timestamp.isoformat(),
            "decided_by": self.decided_by,
            "pieces": submission.pieces,
            "cheques": submission.cheques,
            "bag_number": submission.bag_number,
            "lines": [r.to_dict() for r in self.results],
            "difference_pence": sum(r.difference_pence for r in self.results),
            "reason": submission.reason,
            "history": self.history,
            "version": self.version,
        }


def _step(action: str, event: Aggregate.Event, reason: str) -> dict[str, str]:
    return {
        "action": action,
        "actor": event.actor,  # type: ignore[attr-defined]
        "at": event.timestamp.isoformat(),
        "reason": reason,
    }
