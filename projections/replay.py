"""Balances computed straight from the events, as at any effective date and as known at any time.

This is the auditor's independent route to a figure: it reads the event store, not the read
model, and turns each event into postings with `domain.postings.postings_for`, the one
function that does that. Two clocks matter (bitemporal):

* `as_at` is business time: an event counts when its money movement takes effect on or
  before it (`domain.postings.effective_at`: when a receipt was received, when an allocation,
  transfer, refund or reversal applies).
* `known_at` is recording time: an event counts only if the ledger had recorded it by then
  (`event.timestamp`). A receipt taken on 31 March but keyed on 2 April counts "as at
  31 March" only when `known_at` is after 2 April; without `known_at`, everything recorded
  so far counts.

The CLI (`income-ledger replay`) and the HTTP API (`GET /audit/balances`) both call
`replay_balances`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.errors import InvalidRequest
from domain.postings import SUSPENSE, VAT_OUTPUT, effective_at, postings_for


@dataclass(frozen=True)
class ReplayResult:
    """Balances from a replay of the events (pence; see `replay_balances` for the signs).

    `events_counted` is how many events passed the time filters (whatever `fund_code`);
    `events_read` how many were read; `last_position` the position of the last event read,
    so the replay covers the event store up to there.
    """

    as_at: datetime
    known_at: datetime | None
    fund_code: str | None
    funds: dict[str, int]
    vat_pence_by_fund: dict[str, int]
    suspense_pence: int
    accounts: dict[str, int]
    events_counted: int
    events_read: int
    last_position: int

    @property
    def trial_balance_pence(self) -> int:
        """The sum of every account's balance: zero for the whole ledger (double entry)."""
        return sum(self.accounts.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON: pence as integers, times as ISO 8601 UTC."""
        return {
            "as_at": self.as_at.isoformat(),
            "known_at": self.known_at.isoformat() if self.known_at else None,
            "fund_code": self.fund_code,
            "funds": dict(sorted(self.funds.items())),
            "vat_pence_by_fund": dict(sorted(self.vat_pence_by_fund.items())),
            "suspense_pence": self.suspense_pence,
            "events_counted": self.events_counted,
            "events_read": self.events_read,
            "last_position": self.last_position,
        }


def replay_balances(
    events: Iterable[tuple[int, Any]],
    *,
    as_at: datetime,
    known_at: datetime | None = None,
    fund_code: str | None = None,
) -> ReplayResult:
    """Replay (position, domain event) pairs in recording order into balances.

    * `funds`: fund code -> income held, VAT included, as a credit balance (positive when the
      fund holds money): minus the sum of the fund's `income:*` and `vat:output` postings.
      Every fund with a counted posting appears, even if it nets to zero.
    * `vat_pence_by_fund`: the output-VAT part of each fund's balance (credit, positive).
    * `suspense_pence`: money received but not allocated, as a credit balance (positive).
      Suspense belongs to no fund, so it is the whole ledger's even with `fund_code`.
    * `accounts`: every account's signed balance (debit +, credit -); they sum to zero.

    With `fund_code`, `funds` holds that fund alone (0 if it had no postings) and `accounts`
    only that fund's postings (its `income:<FUND>:*` accounts and its share of `vat:output`).
    Both times must be timezone-aware; an event counts when `effective_at(event) <= as_at`
    and, given `known_at`, `event.timestamp <= known_at`.
    """
    _require_aware(as_at, "as_at")
    if known_at is not None:
        _require_aware(known_at, "known_at")
    fund = fund_code.strip().upper() if fund_code else None
    accounts: dict[str, int] = defaultdict(int)
    fund_accounts: dict[str, int] = defaultdict(int)
    funds: dict[str, int] = defaultdict(int)
    vat: dict[str, int] = defaultdict(int)
    counted = read = last_position = 0
    for position, event in events:
        read += 1
        last_position = position
        if known_at is not None and event.timestamp > known_at:
            continue
        if effective_at(event) > as_at:
            continue
        counted += 1
        for posting in postings_for(event):
            account, pence, code = posting.account, posting.amount_pence, posting.fund_code
            accounts[account] += pence
            if code is None:
                continue
            funds[code] -= pence
            if account == VAT_OUTPUT:
                vat[code] -= pence
            if code == fund:
                fund_accounts[account] += pence
    if fund is not None:
        funds = defaultdict(int, {fund: funds.get(fund, 0)})
        vat = defaultdict(int, {fund: vat.get(fund, 0)})
    return ReplayResult(
        as_at=as_at,
        known_at=known_at,
        fund_code=fund,
        funds=dict(funds),
        vat_pence_by_fund=dict(vat),
        suspense_pence=-accounts.get(SUSPENSE, 0),
        accounts=dict(fund_accounts if fund is not None else accounts),
        events_counted=counted,
        events_read=read,
        last_position=last_position,
    )


def join_replays(parts: Sequence[ReplayResult]) -> ReplayResult:
    """Replays of consecutive position ranges (in order, same times and fund) as one replay
    of them all: every figure is a sum over events, and the accounts appear in the order a
    single replay first meets them."""
    first, last = parts[0], parts[-1]
    sums: list[dict[str, int]] = [{}, {}, {}]
    for part in parts:
        for total, figures in zip(
            sums, (part.funds, part.vat_pence_by_fund, part.accounts), strict=True
        ):
            for key, value in figures.items():
                total[key] = total.get(key, 0) + value
    funds, vat, accounts = sums
    read = [part for part in parts if part.events_read]
    return ReplayResult(
        as_at=first.as_at,
        known_at=first.known_at,
        fund_code=first.fund_code,
        funds=funds,
        vat_pence_by_fund=vat,
        suspense_pence=sum(part.suspense_pence for part in parts),
        accounts=accounts,
        events_counted=sum(part.events_counted for part in parts),
        events_read=sum(part.events_read for part in parts),
        last_position=read[-1].last_position if read else last.last_position,
    )


def income_per_fund(accounts: dict[str, int]) -> dict[str, int]:
    """`income:<FUND>:<reference>` accounts added up per fund as `income:<FUND>`, the other
    accounts as they are, sorted: a trial balance short enough to read."""
    summary: dict[str, int] = {}
    for account, value in accounts.items():
        if account.startswith("income:"):
            account = ":".join(account.split(":", 2)[:2])
        summary[account] = summary.get(account, 0) + value
    return dict(sorted(summary.items()))


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidRequest(f"{name} must carry a time zone, like 2026-03-31T23:59:59Z")
