"""Cash offices and tills: the configuration a counter receipt and a cash-up are checked
against (domain.offices). Changes are events on the one OfficeRegister."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from domain.cashups import CashUp, CashUpStatus, cashup_id
from domain.errors import ConcurrentUpdate, InvalidRequest, TillCashedUp
from domain.limits import require_business_datetime
from domain.offices import OfficeRegister
from domain.payment import Channel
from domain.periods import uk_date

if TYPE_CHECKING:
    from application.ledger import CommandContext, IncomeLedger

SYSTEM_ACTOR = "system"


def office_register(ledger: IncomeLedger) -> OfficeRegister:
    """The register as stored (a new, unsaved one before the first office is added)."""
    try:
        found = ledger.repository.get(OfficeRegister.create_id())
    except AggregateNotFoundError:
        return OfficeRegister.open(actor=SYSTEM_ACTOR)
    assert isinstance(found, OfficeRegister)
    return found


def change_offices(
    ledger: IncomeLedger, change: Callable[[OfficeRegister], None]
) -> dict[str, Any]:
    """Apply one change to the register and save it; returns the offices and the position."""
    register = office_register(ledger)
    change(register)
    try:
        position = ledger.save_checked(register)  # type: ignore[arg-type]
    except IntegrityError:
        raise ConcurrentUpdate(
            "the offices were changed by someone else at the same moment; retry"
        ) from None
    return {"position": position, "offices": _views(register)}


def add_office(
    ledger: IncomeLedger, code: str, name: str, channels: list[str], ctx: CommandContext
) -> dict[str, Any]:
    return change_offices(
        ledger, lambda register: register.add_office(code, name, channels, actor=ctx.actor)
    )


def add_till(
    ledger: IncomeLedger, office_code: str, till_code: str, ctx: CommandContext, name: str = ""
) -> dict[str, Any]:
    return change_offices(
        ledger,
        lambda register: register.add_till(office_code, till_code, actor=ctx.actor, name=name),
    )


def offices(ledger: IncomeLedger) -> list[dict[str, Any]]:
    """Every office with its tills and channels, open and closed, by code."""
    return _views(office_register(ledger))


def _views(register: OfficeRegister) -> list[dict[str, Any]]:
    return [register.offices[code].to_dict() for code in sorted(register.offices)]


def counter_of(
    ledger: IncomeLedger,
    office_code: str | None,
    till_code: str | None,
    channel: Channel,
    received_at: datetime,
) -> tuple[str, str] | None:
    """The checked (office, till) of a receipt taken at a counter, or None for others.
    A till's day whose cash-up was approved is final: its count matched what was recorded
    then, so a receipt for it now would break what the authoriser signed off."""
    if office_code is None and till_code is None:
        return None
    if not office_code or not till_code:
        raise InvalidRequest(
            "a receipt taken at a counter names both its office and its till (or neither)"
        )
    counter = office_register(ledger).counter(office_code, till_code, channel.value)
    received_on = uk_date(require_business_datetime(received_at, "received_at"))
    try:
        cashup = ledger.repository.get(cashup_id(*counter, received_on))
    except AggregateNotFoundError:
        return counter
    if isinstance(cashup, CashUp) and cashup.status is CashUpStatus.APPROVED:
        raise TillCashedUp(
            f"till {counter[1]} at {counter[0]} was cashed up for {received_on} and the "
            "cash-up approved: record the receipt on a till still open for the day, or "
            "on the day it is paid in"
        )
    return counter
