"""A file's new receipts made line by line with what every line shares worked out once
(issue #10).

`IncomeLedger.new_receipt` makes one receipt from one command: it parses the channel,
checks the user's access to the fund, checks the received time against the clock, makes
the events' fields as keyword arguments (`Payment.receipt_fields`), merges them with the
events' defaults, makes the two events as objects, writes each field by type
(`ReceiptEncoder`), checks each event's postings and lists its money movements. An import
does that 100,000 times for lines of one channel, one or two dates, a few funds and one
user: most of it is the same answer again (docs/performance.md, eleventh session).

`ReceiptMaker.new` makes the same stored events (byte for byte, the recording clock's
timestamps apart) and the same money movements, and says what the batch's entry for the
line needs (`NewReceipt`), without the events as objects:

* what is the same for every line is asked once: the channel's parse, the user's access to
  each fund, a received time's checks (a time accepted once is accepted again later in the
  file: the clock only moves on; a refused one is asked every time), and the events' field
  order (read from the event classes when the maker is made: a new field makes the maker
  take the old way until its order is written here);
* each event's state is one dict literal in its class's field order, written by orjson;
* the postings are not worked out again: a Received posts its amount from the channel's
  cash or clearing account to suspense, and an Allocated of the whole amount to one fund
  posts it from suspense to the payer account and VAT, each balanced by construction
  (domain.postings; tests/application/test_receipt_maker.py holds the stored rows equal to
  `new_receipt`'s, whose postings are checked).

Every check `receipt_fields` applies is applied, in the same functions; when one refuses
the line, or a value is one the fast writing is not sure of (a provider's details that are
not flat text and numbers, a counter, a lone surrogate, an integer beyond 64 bits), the
line is made by `new_receipt` instead, which refuses it or encodes it its own way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
from eventsourcing.persistence import StoredEvent

from application.periods import MOVEMENTS
from application.receipt_encoding import _ALLOCATED, _DATETIME, _PAYMENT_TOPIC, _RECEIVED
from domain.cards import reject_card_numbers, reject_control_characters
from domain.errors import LedgerError
from domain.funds import Fund, FundChart
from domain.idempotent import running_command
from domain.limits import (
    MAX_EXTERNAL_ID_LENGTH,
    MAX_FUND_CODE_LENGTH,
    MAX_REFERENCE_LENGTH,
    require_business_datetime,
    require_length,
)
from domain.money import require_positive_pence, vat_from_gross
from domain.payment import (
    AUTO_ALLOCATION_ACTOR,
    CLEARING_CHANNELS,
    Channel,
    Payment,
    PaymentStatus,
    clearing_account_for,
    payment_id_for,
)
from domain.references import capitals, normalise_reference
from runtime.plain import is_flat

if TYPE_CHECKING:
    from application.ledger import CommandContext, EncodedReceipt, IncomeLedger, RecordPayment

# The events' fields in their classes' order, as the maker writes them (checked against the
# classes when a maker is made).
RECEIVED_FIELDS = (
    "timestamp",
    "originator_topic",
    "actor",
    "idempotency_key",
    "fingerprint",
    "channel",
    "amount_pence",
    "received_at",
    "reference",
    "fund_hint",
    "external_id",
    "suspense_reason",
    "match_detail",
    "provider_details",
    "office_code",
    "till_code",
    "clearing_account",
    "import_rule",
)
ALLOCATED_FIELDS = (
    "timestamp",
    "actor",
    "idempotency_key",
    "fingerprint",
    "lines",
    "reason",
    "effective_at",
    "import_rule",
)
_RECEIVED_MOVE = MOVEMENTS[Payment.Received]
_ALLOCATED_MOVE = MOVEMENTS[Payment.Allocated]
_RECEIVED_TOPIC = _RECEIVED.topic
_ALLOCATED_TOPIC = _ALLOCATED.topic
_TEXT_OR_NONE = (str, type(None))
_SUSPENSE = PaymentStatus.SUSPENSE.value
_ALLOCATED_STATUS = PaymentStatus.ALLOCATED.value


@dataclass(frozen=True, slots=True)
class NewReceipt:
    """What a line's batch entry reads of its new receipt: its id, the reference it keeps,
    the import rule that decided it, the fund it was allocated to on arrival (None: in
    suspense) and its status."""

    payment_id: UUID
    reference: str
    import_rule: dict[str, Any] | None
    fund_code: str | None
    status: str


class _Slow(Exception):
    """The line is made by `new_receipt`."""


def layout_known() -> bool:
    """Whether the event classes' fields are those the maker writes, in its order."""
    return (
        tuple(_RECEIVED.defaults) == RECEIVED_FIELDS
        and tuple(_ALLOCATED.defaults) == ALLOCATED_FIELDS
        and _RECEIVED.class_version == 1
        and _ALLOCATED.class_version == 1
    )


class ReceiptMaker:
    """Makes new receipts for one user's commands against one chart (a file's lines), as
    `IncomeLedger.new_receipt` does. Not shared between threads."""

    def __init__(
        self, ledger: IncomeLedger, ctx: CommandContext, chart: FundChart, *, fast: bool = True
    ) -> None:
        self.ledger, self.ctx, self.chart = ledger, ctx, chart
        self.fast = (
            fast
            and ledger._receipt_encoder.fast
            and layout_known()
            and type(ctx.actor) is str
            and type(ctx.idempotency_key) in _TEXT_OR_NONE
        )
        from application.ledger import EncodedReceipt, fund_match  # imports this

        self._ledger_parts = (EncodedReceipt, fund_match)
        self._channels: dict[str, Channel] = {}
        self._funds_allowed: set[str] = set()
        # By the time and its UTC offset: two times equal as keys are one moment (aware
        # datetimes of one zone compare by their wall clock alone, so the two 01:30s of the
        # night the clocks go back are equal though an hour apart).
        self._moments: dict[tuple[datetime, timedelta | None], datetime] = {}

    def new(self, command: RecordPayment) -> tuple[EncodedReceipt, NewReceipt]:
        """The command's new receipt as stored, and what its batch entry reads of it."""
        if self.fast:
            try:
                return self._fast(command)
            except (_Slow, LedgerError, orjson.JSONEncodeError):
                pass  # made (or refused) the ordinary way
        return self._slow(command)

    def _slow(self, command: RecordPayment) -> tuple[EncodedReceipt, NewReceipt]:
        events, encoded = self.ledger.new_receipt(command, self.ctx, self.chart)
        return encoded, summary(events)

    def _fast(self, command: RecordPayment) -> tuple[EncodedReceipt, NewReceipt]:
        EncodedReceipt, fund_match = self._ledger_parts
        if command.office_code is not None or command.till_code is not None:
            raise _Slow  # a counter's receipt: its till's day is asked of the database
        details = command.provider_details
        if details is not None and not (type(details) is dict and is_flat(details)):
            raise _Slow
        channel = self._channel(command.channel)
        match = fund_match(command, self.chart)
        fund = self.chart.funds[match.fund_code] if match.fund_code else None
        if fund is not None and fund.code not in self._funds_allowed:
            self.ctx.access.require_funds(self.chart, [fund.code])
            self._funds_allowed.add(fund.code)
        given_at = command.received_at
        received_at = self._moment(given_at or datetime.now(UTC))
        ctx = self.ctx
        print_ = command.fingerprint()
        # Payment.receipt_fields' checks, in its order.
        amount = require_positive_pence(command.amount_pence)
        reference = normalise_reference(command.reference)
        external_id, fund_hint = command.external_id, command.fund_code
        require_length("reference", reference, MAX_REFERENCE_LENGTH)
        require_length("external_id", external_id, MAX_EXTERNAL_ID_LENGTH)
        require_length("fund hint (fund code)", fund_hint, MAX_FUND_CODE_LENGTH)
        reject_card_numbers("reference", reference)
        if command.external_id_from_provider:
            reject_control_characters("external_id", external_id)
        else:
            reject_card_numbers("external_id", external_id)
        if (
            type(amount) is not int
            or type(external_id) not in _TEXT_OR_NONE
            or type(fund_hint) not in _TEXT_OR_NONE
            or type(match.detail) is not str
        ):
            raise _Slow
        payment_id = payment_id_for(channel, external_id, ctx.idempotency_key)
        rule = match.import_rule or None
        if rule is not None and not (type(rule) is dict and is_flat(rule)):
            raise _Slow
        at = {"_type_": _DATETIME, "_data_": received_at}
        received = orjson.dumps(
            {
                "timestamp": {"_type_": _DATETIME, "_data_": Payment.Received.create_timestamp()},
                "originator_topic": _PAYMENT_TOPIC,
                "actor": ctx.actor,
                "idempotency_key": ctx.idempotency_key,
                "fingerprint": print_,
                "channel": channel.value,
                "amount_pence": amount,
                "received_at": at,
                "reference": reference,
                "fund_hint": capitals(fund_hint) if fund_hint else None,
                "external_id": external_id,
                "suspense_reason": match.suspense_reason.value if match.suspense_reason else None,
                "match_detail": match.detail,
                "provider_details": details,
                "office_code": None,
                "till_code": None,
                "clearing_account": clearing_account_for(channel)
                if channel in CLEARING_CHANNELS
                else None,
                "import_rule": rule,
            }
        )
        if fund is None:
            stored: tuple[StoredEvent, ...] = (
                StoredEvent(payment_id, Payment.INITIAL_VERSION, _RECEIVED_TOPIC, received),
            )
            moves: tuple[Any, ...] = ((received_at, _RECEIVED_MOVE),)
            made = NewReceipt(payment_id, reference, rule, None, _SUSPENSE)
            return EncodedReceipt(payment_id, stored, moves), made
        allocated = self._allocated(match.detail, rule, fund, reference, amount, received_at, at)
        stored = (
            StoredEvent(payment_id, Payment.INITIAL_VERSION, _RECEIVED_TOPIC, received),
            StoredEvent(payment_id, Payment.INITIAL_VERSION + 1, _ALLOCATED_TOPIC, allocated),
        )
        moves = ((received_at, _RECEIVED_MOVE), (received_at, _ALLOCATED_MOVE))
        made = NewReceipt(payment_id, reference, rule, fund.code, _ALLOCATED_STATUS)
        return EncodedReceipt(payment_id, stored, moves), made

    @staticmethod
    def _allocated(
        reason: str,
        rule: dict[str, Any] | None,
        fund: Fund,
        reference: str,
        amount: int,
        received_at: datetime,
        at: dict[str, Any],
    ) -> bytes:
        """The Allocated event's state: the whole amount to the fund (allocated_line)."""
        rate = fund.vat_rate_at(received_at)
        key = running_command()  # what `record` stamps on the event
        line = {
            "fund_code": fund.code,
            "reference": reference,
            "amount_pence": amount,
            "vat_rate_basis_points": rate,
            "vat_pence": vat_from_gross(amount, rate),
        }
        return orjson.dumps(
            {
                "timestamp": {"_type_": _DATETIME, "_data_": Payment.Allocated.create_timestamp()},
                "actor": AUTO_ALLOCATION_ACTOR,
                "idempotency_key": key.idempotency_key,
                "fingerprint": key.fingerprint,
                "lines": [line],
                "reason": reason,
                "effective_at": at,
                "import_rule": rule,
            }
        )

    def _channel(self, name: str) -> Channel:
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = Channel.parse(name)
        return channel

    def _moment(self, value: datetime) -> datetime:
        """`require_business_datetime` of a received time; a time accepted is kept (the
        check only refuses a time later than now, and now moves on). A UTC time only: the
        fast writing writes a UTC time as the library does."""
        key = (value, value.utcoffset())
        checked = self._moments.get(key)
        if checked is None:
            checked = require_business_datetime(value, "received_at")
            if checked.tzinfo is not UTC:
                raise _Slow
            self._moments[key] = checked
        return checked


def summary(events: list[Payment.Event]) -> NewReceipt:
    """What a batch entry reads of a new receipt's events (a Received and at most one
    allocation on arrival: `Payment.receipt_events`): each fund's allocated pence summed
    from the stored lines, without building the allocation lines."""
    received = events[0]
    assert isinstance(received, Payment.Received)
    held: dict[tuple[str, str], int] = {}
    for event in events[1:]:
        assert isinstance(event, Payment.Allocated), event
        for allocated in event.lines:
            key = (allocated["fund_code"], allocated["reference"])
            held[key] = held.get(key, 0) + allocated["amount_pence"]
    from domain.payment import payment_status

    allocated_pence = sum(held.values())
    funds = sorted({fund for (fund, _), pence in held.items() if pence})
    status = payment_status(allocated_pence, received.amount_pence - allocated_pence, 0)
    return NewReceipt(
        received.originator_id,
        received.reference,
        received.import_rule,
        ",".join(funds) or None,
        status.value,
    )
