"""Cash offices and their tills: configured data, as events on the one `OfficeRegister`.

An office (a council's cash office, a one-stop shop) takes some channels at its counter
(cash, cheque, card in person) through its tills. A receipt taken at a counter names its
office and till, and each till's day is cashed up (domain.cashups). Nothing is deleted: an
office or till is closed, and its history stays.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.cards import require_text
from domain.errors import (
    ChannelNotTaken,
    InvalidRequest,
    OfficeAlreadyExists,
    OfficeNotFound,
    OfficeNotOpen,
    TillAlreadyExists,
    TillNotFound,
)
from domain.funds import LEDGER_NAMESPACE
from domain.payment import Channel
from domain.periods import uk_date

# The channels a counter takes; a cash-up counts the first two.
COUNTER_CHANNELS = (Channel.CASH, Channel.CHEQUE, Channel.CARD)
MAX_CODE_LENGTH = 16
MAX_NAME_LENGTH = 100
MAX_TILLS = 100
_CODE = re.compile(r"[A-Z0-9][A-Z0-9_-]*")


def parse_code(text: str, what: str) -> str:
    """An office or till code as stored: upper case letters, digits, `-` and `_`."""
    code = (text or "").strip().upper()
    if not code or len(code) > MAX_CODE_LENGTH or not _CODE.fullmatch(code):
        raise InvalidRequest(
            f"{what} {text!r} is not a code: use 1 to {MAX_CODE_LENGTH} letters, digits, "
            "'-' or '_', like CIVIC or TILL-1"
        )
    return code


def parse_channels(names: list[str]) -> list[str]:
    """The counter channels an office takes, in a fixed order."""
    chosen = {Channel.parse(name) for name in names}
    if not chosen:
        raise InvalidRequest("an office takes at least one channel: cash, cheque or card")
    other = chosen - set(COUNTER_CHANNELS)
    if other:
        raise InvalidRequest(
            f"an office's counter takes cash, cheque or card, not {', '.join(sorted(other))}"
        )
    return [channel.value for channel in COUNTER_CHANNELS if channel in chosen]


def _name(text: str, what: str) -> str:
    name = require_text(what, text, required=False)
    if not name:
        raise InvalidRequest(f"{what} is required")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidRequest(f"{what} is longer than {MAX_NAME_LENGTH} characters: shorten it")
    return name


@dataclass(frozen=True)
class Till:
    code: str
    name: str
    open: bool = True
    # The UK day it was added (its TillAdded event's timestamp): no day before it is its own.
    added_on: date | None = None


@dataclass(frozen=True)
class Office:
    code: str
    name: str
    channels: tuple[str, ...]
    tills: dict[str, Till] = field(default_factory=dict)
    open: bool = True

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "name": self.name,
            "channels": list(self.channels),
            "open": self.open,
            "tills": [
                {"code": till.code, "name": till.name, "open": till.open}
                for till in self.tills.values()
            ],
        }

    def till(self, code: str) -> Till:
        try:
            return self.tills[code]
        except KeyError:
            known = ", ".join(self.tills) or "none yet"
            raise TillNotFound(
                f"office {self.code} has no till {code!r} (its tills: {known})"
            ) from None

    def require_open_till(self, till_code: str) -> Till:
        till = self.till(till_code)
        if not self.open:
            raise OfficeNotOpen(f"office {self.code} is closed: it takes nothing more")
        if not till.open:
            raise OfficeNotOpen(f"till {till.code} of office {self.code} is closed")
        return till

    def require_channel(self, channel: str) -> None:
        if channel not in self.channels:
            raise ChannelNotTaken(
                f"office {self.code} does not take {channel} (it takes "
                f"{', '.join(self.channels)}): record it without the office, or add the "
                "channel to the office"
            )


class OfficeRegister(Aggregate):
    """Every cash office and its tills. There is one, with a well-known id."""

    @staticmethod
    def create_id() -> UUID:
        return uuid5(LEDGER_NAMESPACE, "office-register")

    class Opened(Aggregate.Created):
        actor: str

    class OfficeAdded(Aggregate.Event):
        office_code: str
        name: str
        channels: list[str]
        actor: str

        def apply(self, register: OfficeRegister) -> None:
            register.offices[self.office_code] = Office(
                self.office_code, self.name, tuple(self.channels)
            )

    class OfficeRenamed(Aggregate.Event):
        office_code: str
        name: str
        actor: str

        def apply(self, register: OfficeRegister) -> None:
            office = register.offices[self.office_code]
            register.offices[self.office_code] = replace(office, name=self.name)

    class ChannelsChanged(Aggregate.Event):
        office_code: str
        channels: list[str]
        actor: str

        def apply(self, register: OfficeRegister) -> None:
            office = register.offices[self.office_code]
            register.offices[self.office_code] = replace(office, channels=tuple(self.channels))

    class OfficeClosed(Aggregate.Event):
        office_code: str
        reason: str
        actor: str

        def apply(self, register: OfficeRegister) -> None:
            office = register.offices[self.office_code]
            register.offices[self.office_code] = replace(office, open=False)

    class TillAdded(Aggregate.Event):
        office_code: str
        till_code: str
        name: str
        actor: str

        def apply(self, register: OfficeRegister) -> None:
            office = register.offices[self.office_code]
            added_on = uk_date(self.timestamp)
            till = Till(self.till_code, self.name, added_on=added_on)
            tills = {**office.tills, self.till_code: till}
            register.offices[self.office_code] = replace(office, tills=tills)

    class TillClosed(Aggregate.Event):
        office_code: str
        till_code: str
        reason: str
        actor: str

        def apply(self, register: OfficeRegister) -> None:
            office = register.offices[self.office_code]
            till = replace(office.tills[self.till_code], open=False)
            register.offices[self.office_code] = replace(
                office, tills={**office.tills, self.till_code: till}
            )

    def __init__(self, actor: str) -> None:
        self.offices: dict[str, Office] = {}

    @classmethod
    def open(cls, actor: str) -> OfficeRegister:
        return cls._create(cls.Opened, id=cls.create_id(), actor=actor)

    def office(self, code: str) -> Office:
        try:
            return self.offices[parse_code(code, "office")]
        except KeyError:
            known = ", ".join(sorted(self.offices)) or "none yet"
            raise OfficeNotFound(
                f"no office {code!r} (offices: {known}); `income-ledger offices add` adds one"
            ) from None

    def add_office(self, code: str, name: str, channels: list[str], *, actor: str) -> None:
        code = parse_code(code, "office")
        if code in self.offices:
            raise OfficeAlreadyExists(f"office {code} already exists")
        self.trigger_event(
            self.OfficeAdded,
            office_code=code,
            name=_name(name, "the office's name"),
            channels=parse_channels(channels),
            actor=actor,
        )

    def rename_office(self, code: str, name: str, *, actor: str) -> None:
        office = self.office(code)
        self.trigger_event(
            self.OfficeRenamed,
            office_code=office.code,
            name=_name(name, "the office's name"),
            actor=actor,
        )

    def set_channels(self, code: str, channels: list[str], *, actor: str) -> None:
        office = self.office(code)
        self.trigger_event(
            self.ChannelsChanged,
            office_code=office.code,
            channels=parse_channels(channels),
            actor=actor,
        )

    def close_office(self, code: str, *, actor: str, reason: str) -> None:
        office = self.office(code)
        if not office.open:
            raise OfficeNotOpen(f"office {office.code} is already closed")
        self.trigger_event(
            self.OfficeClosed,
            office_code=office.code,
            reason=require_text("reason", reason, required=True),
            actor=actor,
        )

    def add_till(self, office_code: str, till_code: str, *, actor: str, name: str = "") -> None:
        office = self.office(office_code)
        code = parse_code(till_code, "till")
        if not office.open:
            raise OfficeNotOpen(f"office {office.code} is closed: it takes no new tills")
        if code in office.tills:
            raise TillAlreadyExists(f"office {office.code} already has till {code}")
        if len(office.tills) >= MAX_TILLS:
            raise InvalidRequest(f"an office has at most {MAX_TILLS} tills")
        self.trigger_event(
            self.TillAdded,
            office_code=office.code,
            till_code=code,
            name=_name(name or code, "the till's name"),
            actor=actor,
        )

    def close_till(self, office_code: str, till_code: str, *, actor: str, reason: str) -> None:
        office = self.office(office_code)
        till = office.till(parse_code(till_code, "till"))
        if not till.open:
            raise OfficeNotOpen(f"till {till.code} of office {office.code} is already closed")
        self.trigger_event(
            self.TillClosed,
            office_code=office.code,
            till_code=till.code,
            reason=require_text("reason", reason, required=True),
            actor=actor,
        )

    def counter(self, office_code: str, till_code: str, channel: str) -> tuple[str, str]:
        """The office and till codes of a receipt taken at a counter, checked: both known and
        open, and the channel one the office takes."""
        office = self.office(office_code)
        till = office.require_open_till(parse_code(till_code, "till"))
        office.require_channel(channel)
        return office.code, till.code
