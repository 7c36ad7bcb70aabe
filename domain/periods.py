"""Closed periods: days, calendar months and April-March financial years, in UK local dates.

A close is an event on the one `PeriodCalendar`. Closing a month closes every day in it and
closing a year every month in it, because a close covers a range of days. A close is never
undone: the figures a supervisor signed off stay the figures of that period, and a late item
is recorded in the open period with a reference to the closed one (as councils book a prior
period adjustment). Only a period that has ended can be closed, so today is always open and a
movement dated "now" is never refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo

from eventsourcing.domain import Aggregate

from domain.cards import require_text
from domain.errors import (
    InvalidRequest,
    PeriodAlreadyClosed,
    PeriodClosed,
    PeriodNotEnded,
    ReasonRequired,
)
from domain.funds import LEDGER_NAMESPACE

UK = ZoneInfo("Europe/London")
FINANCIAL_YEAR_START_MONTH = 4
# What the period gate calls a receipt (application.periods.MOVEMENTS): the one movement that
# keeps the closed period it relates to.
RECEIPT = "a receipt"


def uk_date(moment: datetime) -> date:
    """The UK business date of an aware moment."""
    return moment.astimezone(UK).date()


class PeriodKind(StrEnum):
    DAY = "day"
    MONTH = "month"
    YEAR = "year"

    @classmethod
    def parse(cls, text: str) -> PeriodKind:
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise InvalidRequest(f"unknown period {text!r}: use day, month or year") from None


@dataclass(frozen=True)
class Period:
    kind: PeriodKind
    first_day: date
    last_day: date

    @classmethod
    def containing(cls, kind: PeriodKind, day: date) -> Period:
        """The day, calendar month or financial year (1 April - 31 March) holding `day`."""
        if kind is PeriodKind.DAY:
            return cls(kind, day, day)
        if kind is PeriodKind.MONTH:
            first = day.replace(day=1)
            following = (first + timedelta(days=32)).replace(day=1)
            return cls(kind, first, following - timedelta(days=1))
        start_year = day.year if day.month >= FINANCIAL_YEAR_START_MONTH else day.year - 1
        return cls(
            kind,
            date(start_year, FINANCIAL_YEAR_START_MONTH, 1),
            date(start_year + 1, FINANCIAL_YEAR_START_MONTH, 1) - timedelta(days=1),
        )

    @property
    def label(self) -> str:
        """How the income team names it: 2026-03-31, 2026-03, or financial year 2025-26."""
        if self.kind is PeriodKind.DAY:
            return self.first_day.isoformat()
        if self.kind is PeriodKind.MONTH:
            return self.first_day.strftime("%Y-%m")
        return f"{self.first_day.year}-{(self.first_day.year + 1) % 100:02d}"

    @property
    def name(self) -> str:
        words = {PeriodKind.DAY: "day", PeriodKind.MONTH: "month", PeriodKind.YEAR: "year"}
        prefix = "financial year" if self.kind is PeriodKind.YEAR else words[self.kind]
        return f"{prefix} {self.label}"

    def holds(self, day: date) -> bool:
        return self.first_day <= day <= self.last_day


@dataclass(frozen=True)
class Close:
    period: Period
    closed_by: str
    closed_at: datetime
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.period.kind.value,
            "period": self.period.label,
            "first_day": self.period.first_day.isoformat(),
            "last_day": self.period.last_day.isoformat(),
            "closed_by": self.closed_by,
            "closed_at": self.closed_at.isoformat(),
            "reason": self.reason,
        }


class PeriodCalendar(Aggregate):
    """Which business periods are closed. There is one, with a well-known id."""

    @staticmethod
    def create_id() -> UUID:
        return uuid5(LEDGER_NAMESPACE, "period-calendar")

    class Opened(Aggregate.Created):
        actor: str

    class PeriodClosed(Aggregate.Event):
        # Dates as ISO text: the stored form needs no special transcoding.
        kind: str
        first_day: str
        last_day: str
        actor: str
        reason: str

        def apply(self, calendar: PeriodCalendar) -> None:
            period = Period(
                PeriodKind(self.kind),
                date.fromisoformat(self.first_day),
                date.fromisoformat(self.last_day),
            )
            calendar.closes.append(Close(period, self.actor, self.timestamp, self.reason))

    def __init__(self, actor: str) -> None:
        self.closes: list[Close] = []

    @classmethod
    def open(cls, actor: str) -> PeriodCalendar:
        return cls._create(cls.Opened, id=cls.create_id(), actor=actor)

    def close(self, period: Period, *, actor: str, reason: str, today: date) -> None:
        """Close a period that has ended; its days (and months) close with it."""
        if not reason or not reason.strip():
            raise ReasonRequired("a reason is required: say why the period is closed")
        # A close is final: its reason is held to what every other reason is (its length,
        # no card number, no control characters), or it would stay wrong for ever.
        reason = require_text("reason", reason, required=True)
        if period.last_day >= today:
            raise PeriodNotEnded(
                f"the {period.name} has not ended (it runs to {period.last_day.isoformat()}); "
                "close it from the day after"
            )
        if all(self.close_of(day) for day in _days(period)):
            covering = self.close_of(period.first_day)
            assert covering is not None
            raise PeriodAlreadyClosed(
                f"the {period.name} is already closed (by the {covering.period.name}, closed "
                f"by {covering.closed_by}); nothing to do"
            )
        self.trigger_event(
            self.PeriodClosed,
            kind=period.kind.value,
            first_day=period.first_day.isoformat(),
            last_day=period.last_day.isoformat(),
            actor=actor,
            reason=reason,
        )

    def close_of(self, day: date) -> Close | None:
        """The widest close holding `day` (a year before a month before a day), or None."""
        holding = [close for close in self.closes if close.period.holds(day)]
        if not holding:
            return None
        return max(
            holding,
            key=lambda c: (c.period.last_day - c.period.first_day, -c.closed_at.timestamp()),
        )

    def require_open(self, moment: datetime, what: str) -> None:
        """Refuse `what` (a receipt, an allocation...) when it would take effect in a closed
        period, saying which and what to do instead."""
        day = uk_date(moment)
        close = self.close_of(day)
        if close is None:
            return
        label = close.period.label
        if what == RECEIPT:
            instead = (
                f"with relates_to_period={label} (on the command line --relates-to-period "
                f"{label}) so the late item can be traced to the closed one"
            )
        else:  # only a receipt keeps the period it relates to
            instead = f"saying in its reason that it relates to {label}"
        raise PeriodClosed(
            f"{what} dated {day.isoformat()} falls in the {close.period.name}, closed by "
            f"{close.closed_by} on {uk_date(close.closed_at).isoformat()}: nothing can take "
            "effect in a closed period. Record it in the open period instead (without this "
            f"date, so that it takes effect now) {instead}"
        )


def _days(period: Period) -> list[date]:
    return [
        period.first_day + timedelta(days=n)
        for n in range((period.last_day - period.first_day).days + 1)
    ]
