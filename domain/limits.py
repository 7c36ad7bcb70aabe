"""The limits of accepted input, defined once.

Every edge (domain commands, CLI, HTTP API, webhook) checks against these, and the read model's
column widths and the API schemas are generated from them, so that nothing accepted can fail to
fit where it is stored later.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from domain.errors import InvalidEffectiveDate, InvalidRequest

UK = ZoneInfo("Europe/London")

# ---- text ---------------------------------------------------------------------------------
# The longest text each field accepts, in characters (PostgreSQL VARCHAR(n) counts characters).

MAX_FUND_CODE_LENGTH = 16
# A receipt's reference as the payer or the channel gave it (GOV.UK Pay allows 255). One too
# long for every fund's rule is not refused: the money goes to suspense.
MAX_REFERENCE_LENGTH = 255
# What a fund's reference rule may accept (its max_length): account numbers are short.
MAX_FUND_REFERENCE_LENGTH = 40
MAX_EXTERNAL_ID_LENGTH = 255
MAX_ACTOR_LENGTH = 200
# An Idempotency-Key as a client sends it. The ledger stores it scoped by its user,
# `user:key` (the user's name is part of the actor), so the stored correlation id may be as
# long as an actor, a colon and a key.
MAX_IDEMPOTENCY_KEY_LENGTH = 200
MAX_CORRELATION_ID_LENGTH = MAX_ACTOR_LENGTH + 1 + MAX_IDEMPOTENCY_KEY_LENGTH
MAX_TEXT_LENGTH = 500  # reasons and notes
MAX_PAYER_FIELD_LENGTH = 200  # a payer's name, email, phone, address
# A fund's definition (kept in the event store only, but one contract for every edge).
MAX_FUND_FIELD_LENGTHS = {"name": 100, "vat_code": 10, "cost_centre": 20, "ledger_code": 20}
MAX_REFERENCE_PATTERN_LENGTH = 200


def require_length(field: str, text: str | None, max_length: int) -> None:
    """Refuse text longer than its limit, saying the limit."""
    if text is not None and len(text) > max_length:
        raise InvalidRequest(
            f"{field} is {len(text)} characters long; the limit is {max_length}: shorten it"
        )


# ---- time ---------------------------------------------------------------------------------

# A recording clock may run a little behind the sender's: a receipt stamped a few minutes
# "in the future" by another machine is not a typo.
CLOCK_SKEW = timedelta(minutes=5)
# No money this ledger holds was received before 2000; an earlier date is a typo, and dates
# near year 1 or 9999 overflow every calendar calculation (UK dates, day ends, time zones).
EARLIEST_BUSINESS_MOMENT = datetime(2000, 1, 1, tzinfo=UTC)
# Reports and queries may look ahead (period ends, forecasts), but not past this.
LATEST_QUERY_MOMENT = datetime(2100, 1, 1, tzinfo=UTC)
DATE_FORMAT_HINT = "2026-03-31T10:00:00Z"


def _aware_utc(value: datetime, field: str, latest: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidEffectiveDate(f"{field} must carry a time zone (e.g. {DATE_FORMAT_HINT})")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidEffectiveDate(_out_of_range(field, value, latest)) from None


def _out_of_range(field: str, value: object, latest: str) -> str:
    return (
        f"{field} {value} is outside the business range: give a date and time from "
        f"{EARLIEST_BUSINESS_MOMENT.date()} to {latest}"
    )


def require_business_datetime(
    value: datetime, field: str, *, now: datetime | None = None
) -> datetime:
    """When money moved (a receipt, an allocation, a refund): aware, from 2000 on, and not
    later than now (allowing CLOCK_SKEW); returned in UTC."""
    moment = _aware_utc(value, field, "now")
    latest = (now or datetime.now(UTC)) + CLOCK_SKEW
    if moment > latest:
        raise InvalidEffectiveDate(
            f"{field} {moment.isoformat()} is in the future; money cannot move before it "
            f"arrives: give a date and time from {EARLIEST_BUSINESS_MOMENT.date()} to now"
        )
    if moment < EARLIEST_BUSINESS_MOMENT:
        raise InvalidEffectiveDate(_out_of_range(field, moment.isoformat(), "now"))
    return moment


def require_query_datetime(value: datetime, field: str) -> datetime:
    """A moment a report or query asks about: aware, 2000-01-01 up to 2100-01-01; in UTC."""
    moment = _aware_utc(value, field, str(LATEST_QUERY_MOMENT.date()))
    if not EARLIEST_BUSINESS_MOMENT <= moment <= LATEST_QUERY_MOMENT:
        raise InvalidEffectiveDate(
            _out_of_range(field, moment.isoformat(), str(LATEST_QUERY_MOMENT.date()))
        )
    return moment


def require_query_date(day: date, field: str) -> date:
    """A UK business date a report or query asks about, 2000-01-01 up to 2100-01-01."""
    if not EARLIEST_BUSINESS_MOMENT.date() <= day <= LATEST_QUERY_MOMENT.date():
        raise InvalidEffectiveDate(_out_of_range(field, day, str(LATEST_QUERY_MOMENT.date())))
    return day


def uk_day_start(day: date) -> datetime:
    """Midnight at the start of a UK business day, in UTC (the clocks change in between)."""
    return datetime.combine(day, time(0), tzinfo=UK).astimezone(UTC)


def uk_today() -> date:
    return datetime.now(UK).date()


def parse_query_moment(text: str, field: str, *, end_of_day: bool) -> datetime:
    """A query bound as people write it: ISO 8601 with a zone, or a bare UK date meaning the
    start of that business day (end_of_day=False, for `from`) or its last instant (for `to`)."""
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return require_query_datetime(_parse_iso(text, field), field)
    require_query_date(day, field)
    if end_of_day:
        return uk_day_start(day + timedelta(days=1)) - timedelta(microseconds=1)
    return uk_day_start(day)


def parse_query_date(text: str, field: str) -> date:
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidEffectiveDate(
            f"{field} {text!r} is not a date: write it like 2026-03-31"
        ) from None
    return require_query_date(day, field)


def _parse_iso(text: str, field: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEffectiveDate(
            f"{field} {text!r} is not a date and time: write it like {DATE_FORMAT_HINT} "
            "or give a date like 2026-03-31"
        ) from None
