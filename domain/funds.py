"""Funds and the chart of funds.

The chart is one aggregate: fund configuration changes rarely, every payment consults all of
it (to match a reference to exactly one fund), and one version number makes a change to the
chart and a decision taken on the chart easy to order. Each change is an event of its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, SafeUUID, uuid5

from eventsourcing.domain import Aggregate

from domain.cards import reject_card_numbers
from domain.errors import (
    FundAlreadyExists,
    FundDisabled,
    InvalidFundDefinition,
    InvalidReference,
    UnknownFund,
)
from domain.limits import (
    MAX_FUND_CODE_LENGTH,
    MAX_FUND_FIELD_LENGTHS,
    MAX_REFERENCE_PATTERN_LENGTH,
    require_length,
    require_query_datetime,
)
from domain.references import ReferenceProblem, ReferenceRule, normalise_reference

FUND_CODE = re.compile(rf"^[A-Z][A-Z0-9_]{{0,{MAX_FUND_CODE_LENGTH - 1}}}$")
LEDGER_NAMESPACE = uuid5(NAMESPACE_URL, "https://github.com/income-ledger/income-ledger")
# SHA-1 state after the namespace, which every name-based id of the ledger starts with.
_LEDGER_SHA1 = hashlib.sha1(LEDGER_NAMESPACE.bytes, usedforsecurity=False)
MAX_VAT_RATE_BASIS_POINTS = 10_000
AMENDABLE_FIELDS = (
    "name",
    "vat_code",
    "vat_rate_basis_points",
    "cost_centre",
    "ledger_code",
    "reference_rule",
    "group",
)
FUND_GROUP = re.compile(rf"^[A-Z][A-Z0-9_]{{0,{MAX_FUND_CODE_LENGTH - 1}}}$")


# The first VAT rate of a fund applies to every moment before its first change.
FROM_THE_START = datetime.min.replace(tzinfo=UTC)


# RFC 4122's variant and version 5 bits, as `UUID(..., version=5)` sets them.
_UUID5_KEEP = ~((0xC000 << 48) | (0xF000 << 64))
_UUID5_BITS = (0x8000 << 48) | (5 << 76)


def ledger_uuid5(name: str) -> UUID:
    """`uuid5(LEDGER_NAMESPACE, name)`, the namespace's hash taken once, not once per id
    (an import makes one payment id a line).

    The UUID is made as `UUID.__init__` makes it (its `int` and `is_safe` slots), without
    the checks of its five ways of being called: they took half of an id's time, and a bulk
    batch makes one id a receipt (#9). tests/domain/test_funds.py holds it equal to uuid5."""
    digest = _LEDGER_SHA1.copy()
    digest.update(name.encode())
    made = object.__new__(UUID)
    object.__setattr__(
        made, "int", int.from_bytes(digest.digest()[:16]) & _UUID5_KEEP | _UUID5_BITS
    )
    object.__setattr__(made, "is_safe", SafeUUID.unknown)
    return made


@dataclass(frozen=True)
class VatRateChange:
    """From this moment on, the fund's money carries this VAT rate."""

    effective_from: datetime
    rate_basis_points: int


@dataclass(frozen=True)
class Fund:
    """What money is for: its ledger codes, its VAT and its rule for payer references.

    `vat_rate_basis_points` is the rate from the fund's latest-dated rate change on;
    `vat_rates` says from when each rate the fund ever had applies (kept by the chart from
    its events), because a movement takes the rate in force at its effective date.
    `group` gathers funds run by one service (PARKING, REVENUES): a user can be limited to
    groups. Empty means no group, which only unlimited users see.
    """

    code: str
    name: str
    vat_code: str
    vat_rate_basis_points: int
    cost_centre: str
    ledger_code: str
    reference_rule: ReferenceRule
    enabled: bool = True
    group: str = ""
    vat_rates: tuple[VatRateChange, ...] = dataclasses.field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if not FUND_CODE.match(self.code):
            raise InvalidFundDefinition(
                f"fund code {self.code!r} must be 1-16 capital letters, digits or _, "
                "starting with a letter"
            )
        if not self.name.strip():
            raise InvalidFundDefinition("a fund needs a name")
        if not 0 <= self.vat_rate_basis_points <= MAX_VAT_RATE_BASIS_POINTS:
            raise InvalidFundDefinition(
                "vat_rate_basis_points must be between 0 and 10000 (2000 is 20%)"
            )
        if not self.cost_centre.strip() or not self.ledger_code.strip():
            raise InvalidFundDefinition("a fund needs a cost centre and a ledger code")
        if self.group and not FUND_GROUP.match(self.group):
            raise InvalidFundDefinition(
                f"fund group {self.group!r} must be 1-16 capital letters, digits or _, "
                "starting with a letter (or empty for no group)"
            )
        for field, max_length in MAX_FUND_FIELD_LENGTHS.items():
            require_length(f"fund {field}", getattr(self, field), max_length)
            reject_card_numbers(f"fund {field}", getattr(self, field))
        require_length(
            "reference pattern", self.reference_rule.pattern, MAX_REFERENCE_PATTERN_LENGTH
        )
        reject_card_numbers("reference pattern", self.reference_rule.pattern)

    def vat_rate_at(self, moment: datetime) -> int:
        """The VAT rate in force at a movement's effective date."""
        rate = self.vat_rate_basis_points
        if self.vat_rates:
            rate = self.vat_rates[0].rate_basis_points
        for change in self.vat_rates:
            if change.effective_from <= moment:
                rate = change.rate_basis_points
        return rate

    def reference_problem(self, reference: str) -> ReferenceProblem | None:
        return self.reference_rule.problem(reference)

    def require_valid_reference(self, reference: str) -> None:
        problem = self.reference_problem(reference)
        if problem is not None:
            raise InvalidReference(
                f"reference {reference!r} is not valid for fund {self.code} ({problem}): "
                f"expected {self.reference_rule.describe()}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "vat_code": self.vat_code,
            "vat_rate_basis_points": self.vat_rate_basis_points,
            "cost_centre": self.cost_centre,
            "ledger_code": self.ledger_code,
            "reference_rule": self.reference_rule.to_dict(),
            "enabled": self.enabled,
            "group": self.group,
        }

    @classmethod
    def from_input(cls, data: Any) -> Fund:
        """A new fund from a person's or a file's definition: `from_dict` (which also reads
        stored events, and so takes what it is given) after `check_input` has refused what
        it would have turned into something else (a null name into 'None')."""
        if not isinstance(data, dict):
            raise InvalidFundDefinition(
                f"a fund definition must be a JSON object of its settings, got {data!r:.60}"
            )
        missing = [field for field in REQUIRED_FIELDS if field not in data]
        if missing:
            raise InvalidFundDefinition(
                f"fund definition {data.get('code', '')!r} lacks {', '.join(missing)}"
            )
        check_input(data)
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fund:
        try:
            return cls(
                code=str(data["code"]),
                name=str(data["name"]),
                vat_code=str(data.get("vat_code", "OS")),
                vat_rate_basis_points=int(data.get("vat_rate_basis_points", 0)),
                cost_centre=str(data["cost_centre"]),
                ledger_code=str(data["ledger_code"]),
                reference_rule=ReferenceRule.from_dict(data["reference_rule"]),
                enabled=bool(data.get("enabled", True)),
                group=str(data.get("group") or ""),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidFundDefinition(
                f"fund definition is incomplete or wrong: {error}"
            ) from None


class SuspenseReason(StrEnum):
    """Why a receipt could not be allocated when it arrived."""

    INVALID_REFERENCE = "invalid_reference"
    INVALID_CHECK_DIGIT = "invalid_check_digit"
    UNKNOWN_FUND = "unknown_fund"
    AMBIGUOUS = "ambiguous"
    DISABLED_FUND = "disabled_fund"
    NO_MATCHING_FUND = "no_matching_fund"
    NO_REFERENCE = "no_reference"
    # The channel's reference could not be kept as it came (too long, or it held a card
    # number, which is masked): an officer must find the account from the payment's details.
    UNUSABLE_REFERENCE = "unusable_reference"
    # An Allpay cash adjustment (type C): money, but no payer's payment to match.
    CASH_ADJUSTMENT = "cash_adjustment"
    # A council's import rule sends such lines to suspense (the rule says why).
    IMPORT_RULE = "import_rule"
    # A bank statement credit line whose narrative names a payment provider (a card
    # provider's payout, an Allpay or PayPoint settlement) that matched none of the
    # provider's receipts: its reference is the provider's, not a payer's account, whatever
    # fund's rule it passes (application.imports.names_provider).
    PROVIDER_PAYOUT = "provider_payout"


@dataclass(frozen=True)
class Match:
    """The outcome of matching a receipt's reference: a fund, or a reason for suspense."""

    fund_code: str | None
    suspense_reason: SuspenseReason | None
    detail: str
    # The import rule that decided it (domain.import_rules.RuleDecision.record), if any.
    import_rule: dict[str, Any] | None = None


class FundChart(Aggregate):
    """The council's chart of funds. There is one, with a well-known id."""

    @staticmethod
    def create_id() -> UUID:
        return uuid5(LEDGER_NAMESPACE, "fund-chart")

    class Opened(Aggregate.Created):
        actor: str

    class FundAdded(Aggregate.Event):
        fund: dict[str, Any]
        actor: str
        reason: str

        def apply(self, chart: FundChart) -> None:
            fund = Fund.from_dict(self.fund)
            first = VatRateChange(FROM_THE_START, fund.vat_rate_basis_points)
            chart.funds[fund.code] = replace(fund, vat_rates=(first,))

    class FundAmended(Aggregate.Event):
        code: str
        changes: dict[str, Any]
        actor: str
        reason: str
        # When a new VAT rate starts to apply; None (and every amendment stored before this
        # field existed) means from the moment of the amendment.
        vat_rate_effective_from: datetime | None = None

        def apply(self, chart: FundChart) -> None:
            current = chart.funds[self.code]
            amended = Fund.from_dict(current.to_dict() | self.changes)
            rates = current.vat_rates
            if "vat_rate_basis_points" in self.changes:
                start = self.vat_rate_effective_from or self.timestamp
                change = VatRateChange(start, amended.vat_rate_basis_points)
                kept = [c for c in rates if c.effective_from != start]
                rates = tuple(sorted([*kept, change], key=lambda c: c.effective_from))
                # The fund shows the rate from its latest-dated change on.
                amended = replace(amended, vat_rate_basis_points=rates[-1].rate_basis_points)
            chart.funds[self.code] = replace(amended, vat_rates=rates)

    class FundDisabled(Aggregate.Event):
        code: str
        actor: str
        reason: str

        def apply(self, chart: FundChart) -> None:
            chart.funds[self.code] = replace(chart.funds[self.code], enabled=False)

    class FundEnabled(Aggregate.Event):
        code: str
        actor: str
        reason: str

        def apply(self, chart: FundChart) -> None:
            chart.funds[self.code] = replace(chart.funds[self.code], enabled=True)

    def __init__(self, actor: str) -> None:
        self.funds: dict[str, Fund] = {}
        # The funds `match` tries for each reference length, kept with the funds they were
        # worked out from (see `_funds_of_length`).
        self._by_length: tuple[tuple[Fund, ...], dict[int, tuple[Fund, ...]]] | None = None

    @classmethod
    def open(cls, actor: str) -> FundChart:
        return cls._create(cls.Opened, actor=actor)

    def add_fund(self, fund: Fund, actor: str, reason: str = "new fund") -> None:
        reject_card_numbers("reason", reason)
        if fund.code in self.funds:
            raise FundAlreadyExists(f"fund {fund.code} already exists: amend it instead")
        self.trigger_event(self.FundAdded, fund=fund.to_dict(), actor=actor, reason=reason)

    def amend_fund(
        self,
        code: str,
        changes: dict[str, Any],
        actor: str,
        reason: str,
        vat_rate_effective_from: datetime | None = None,
    ) -> None:
        """Change a fund's settings. A new VAT rate applies to movements effective from
        `vat_rate_effective_from` (default: now); earlier movements keep the rate they took."""
        reject_card_numbers("reason", reason)
        current = self.fund(code)
        unknown = sorted(set(changes) - set(AMENDABLE_FIELDS))
        if unknown:
            raise InvalidFundDefinition(
                f"cannot amend {', '.join(unknown)}; amendable fields are "
                f"{', '.join(AMENDABLE_FIELDS)} (use disable/enable for the status)"
            )
        check_input(changes)
        normalised = Fund.from_dict(current.to_dict() | changes).to_dict()
        effective = {k: normalised[k] for k in changes if normalised[k] != current.to_dict()[k]}
        if vat_rate_effective_from is not None:
            if "vat_rate_basis_points" not in changes:
                raise InvalidFundDefinition(
                    "vat_rate_effective_from goes with a vat_rate_basis_points: give both"
                )
            vat_rate_effective_from = require_query_datetime(
                vat_rate_effective_from, "vat_rate_effective_from"
            )
            # A dated rate is recorded even when it equals the rate last set: it may correct
            # when that rate starts.
            effective["vat_rate_basis_points"] = normalised["vat_rate_basis_points"]
        if effective:
            self.trigger_event(
                self.FundAmended,
                code=code,
                changes=effective,
                actor=actor,
                reason=reason,
                vat_rate_effective_from=vat_rate_effective_from,
            )

    def disable_fund(self, code: str, actor: str, reason: str) -> None:
        reject_card_numbers("reason", reason)
        if self.fund(code).enabled:
            self.trigger_event(self.FundDisabled, code=code, actor=actor, reason=reason)

    def enable_fund(self, code: str, actor: str, reason: str) -> None:
        reject_card_numbers("reason", reason)
        if not self.fund(code).enabled:
            self.trigger_event(self.FundEnabled, code=code, actor=actor, reason=reason)

    def fund(self, code: str) -> Fund:
        try:
            return self.funds[code.upper()]
        except KeyError:
            known = ", ".join(sorted(self.funds)) or "none yet"
            raise UnknownFund(f"no fund with code {code!r}; known funds: {known}") from None

    def enabled_fund(self, code: str) -> Fund:
        fund = self.fund(code)
        if not fund.enabled:
            raise FundDisabled(f"fund {fund.code} is disabled and takes no new money")
        return fund

    def match(self, reference: str, fund_hint: str | None) -> Match:
        """Decide where a new receipt goes: one fund, or suspense with the reason."""
        reference = normalise_reference(reference)
        if not reference:
            return Match(None, SuspenseReason.NO_REFERENCE, "the payment carries no reference")
        if fund_hint:
            return self._match_hinted(reference, fund_hint.upper())
        # A fund whose lengths leave the reference out has a LENGTH problem: neither valid
        # nor failing its check digit, so only funds that take this length are asked.
        problems = [(f, f.reference_problem(reference)) for f in self._funds_of_length(reference)]
        valid = [f for f, problem in problems if problem is None]
        enabled = [f for f in valid if f.enabled]
        if len(enabled) == 1:
            return Match(enabled[0].code, None, f"reference matches fund {enabled[0].code} only")
        if len(enabled) > 1:
            codes = ", ".join(sorted(f.code for f in enabled))
            return Match(None, SuspenseReason.AMBIGUOUS, f"reference is valid for {codes}")
        if valid:
            return Match(
                None, SuspenseReason.DISABLED_FUND, f"reference belongs to disabled {valid[0].code}"
            )
        failing_check = [
            f.code for f, problem in problems if problem is ReferenceProblem.CHECK_DIGIT
        ]
        if failing_check:
            return Match(
                None,
                SuspenseReason.INVALID_CHECK_DIGIT,
                f"reference looks like {', '.join(sorted(failing_check))} but its check digit "
                "is wrong",
            )
        return Match(None, SuspenseReason.NO_MATCHING_FUND, "reference matches no fund's rule")

    def _funds_of_length(self, reference: str) -> tuple[Fund, ...]:
        """The funds whose reference rule takes references of this one's length, in the
        chart's order: one dictionary look-up per receipt instead of asking every fund
        (an import asks once per line). Worked out again whenever the funds differ from
        those it was worked out from, however they changed."""
        funds = tuple(self.funds.values())
        held = getattr(self, "_by_length", None)
        if held is None or held[0] != funds:
            by_length: dict[int, list[Fund]] = {}
            for fund in funds:
                rule = fund.reference_rule
                for length in range(rule.min_length, rule.max_length + 1):
                    by_length.setdefault(length, []).append(fund)
            held = (funds, {length: tuple(found) for length, found in by_length.items()})
            self._by_length = held
        return held[1].get(len(reference), ())

    def _match_hinted(self, reference: str, code: str) -> Match:
        fund = self.funds.get(code)
        if fund is None:
            return Match(None, SuspenseReason.UNKNOWN_FUND, f"fund {code!r} does not exist")
        if not fund.enabled:
            return Match(None, SuspenseReason.DISABLED_FUND, f"fund {code} is disabled")
        problem = fund.reference_problem(reference)
        if problem is ReferenceProblem.CHECK_DIGIT:
            return Match(
                None, SuspenseReason.INVALID_CHECK_DIGIT, f"check digit wrong for fund {code}"
            )
        if problem is not None:
            return Match(
                None,
                SuspenseReason.INVALID_REFERENCE,
                f"reference not valid for fund {code} ({problem}): expected "
                f"{fund.reference_rule.describe()}",
            )
        return Match(code, None, f"reference valid for hinted fund {code}")


REQUIRED_FIELDS = ("code", "name", "cost_centre", "ledger_code", "reference_rule")
TEXT_FIELDS = ("code", "name", "vat_code", "cost_centre", "ledger_code")


def check_input(data: dict[str, Any]) -> None:
    """Refuse settings of a type `Fund.from_dict` would silently turn into another value:
    text that is null, true/false, a list or an object (a whole number is taken as its
    digits: a ledger code like 5010); a VAT rate that is not a whole number; an `enabled`
    that is not true or false."""
    for field in TEXT_FIELDS:
        value = data.get(field, "")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidFundDefinition(f"{field} must be text, got {_json(value)}")
    group = data.get("group")
    if group is not None and not isinstance(group, str):
        raise InvalidFundDefinition(f"group must be text or null, got {_json(group)}")
    rate = data.get("vat_rate_basis_points", 0)
    if isinstance(rate, bool) or not isinstance(rate, int):
        raise InvalidFundDefinition(
            f"vat_rate_basis_points must be a whole number (2000 is 20%), got {_json(rate)}"
        )
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidFundDefinition(f"enabled must be true or false, got {_json(enabled)}")
    rule = data.get("reference_rule", {})
    if not isinstance(rule, dict):
        raise InvalidFundDefinition(
            f"reference_rule must be an object (a mask, or a pattern with min_length and "
            f"max_length), got {_json(rule)}"
        )


def _json(value: Any) -> str:
    return json.dumps(value)[:60]
