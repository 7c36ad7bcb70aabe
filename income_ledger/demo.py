"""Demo data: a few business days of a council's income, so a new user sees a real ledger.

Deterministic for a seed: external ids and idempotency keys derive from it, so running the
demo twice with the same seed records nothing new, and running it again after it stopped
part-way completes it.

Everything is generated and checked against the ledger's rules before anything is saved;
then it is saved in bounded batches, each all or nothing. A failure while saving (a lost
database, a full disk) raises DemoInterrupted, which says exactly what is stored.
"""

from __future__ import annotations

import copy
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from application.ledger import CommandContext, IncomeLedger, Outcome, RecordPayment
from application.payer_details import PayerDetails
from domain.errors import ConcurrentUpdate, LedgerError
from domain.funds import Fund
from domain.sample_chart import SAMPLE_FUNDS
from projections.replay import replay_balances

UK = ZoneInfo("Europe/London")
CHANNEL_WEIGHTS = {
    "govuk_pay": 35,
    "direct_debit": 20,
    "bank_transfer": 10,
    "cash": 8,
    "card": 7,
    "cheque": 5,
    "telephone": 5,
    "allpay": 5,
    "paypoint": 5,
}
FUND_WEIGHTS = {"CT": 45, "HRA": 20, "PCN": 12, "NNDR": 10, "SUN": 6, "TRW": 4, "BOP": 3}
AMOUNT_RANGES_PENCE = {
    "CT": (5_000, 25_000),
    "NNDR": (20_000, 300_000),
    "HRA": (6_000, 14_000),
    "PCN": (3_500, 11_000),
    "SUN": (2_000, 200_000),
    "BOP": (1_000, 10_000),
    "TRW": (3_000, 40_000),
}
SURNAMES = [
    "Patel",
    "Smith",
    "Jones",
    "Williams",
    "Khan",
    "Brown",
    "Taylor",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Roberts",
    "Ahmed",
    "Walker",
    "Wright",
    "Hughes",
]
OFFICERS = ["officer:j.hughes", "officer:a.khan", "officer:m.roberts"]

# A returned cheque, a direct-debit return, a lost card dispute: (chance, kind, reason).
REVERSALS = {
    "cheque": (0.15, "returned_cheque", "cheque returned unpaid by bank"),
    "direct_debit": (0.05, "direct_debit_return", "ARUDD: instruction cancelled"),
    "govuk_pay": (0.02, "chargeback", "card dispute lost"),
}
SETUP = CommandContext("system:demo")
IMPORT = CommandContext("integration:demo-import")
FUNDS_REASON = "sample chart of funds"
BATCH_SIZE = 500  # receipts per transaction: a failure loses at most one batch's work


def business_days(count: int, today: date) -> list[date]:
    days: list[date] = []
    day = today - timedelta(days=1)
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day -= timedelta(days=1)
    return sorted(days)


def make_reference(fund: Fund, rng: random.Random) -> str:
    rule = fund.reference_rule
    if fund.code == "CT":
        body = f"{rng.randint(1_000_000, 9_999_999)}"
    elif fund.code == "NNDR":
        body = f"{rng.randint(10_000_000, 99_999_999)}"
    elif fund.code == "HRA":
        body = f"{rng.randint(100_000, 999_999)}"
    elif fund.code == "PCN":
        body = f"{rng.choice(['PN', 'PK', 'WL'])}{rng.randint(1_000_000, 9_999_999)}"
    elif fund.code == "SUN":
        body = f"INV{rng.randint(100_000, 999_999)}"
    elif fund.code == "BOP":
        return f"BO{rng.randint(100_000, 999_999)}"
    else:
        return f"TW{rng.randint(100_000, 999_999)}"
    return rule.with_check_digit(body)


def mistype(reference: str, rng: random.Random) -> str:
    """A payer's typo: one digit changed, which a check digit usually catches."""
    positions = [i for i, c in enumerate(reference) if c.isdigit()]
    if not positions:
        return reference + "1"
    i = rng.choice(positions)
    digit = str((int(reference[i]) + rng.randint(1, 9)) % 10)
    return reference[:i] + digit + reference[i + 1 :]


@dataclass(frozen=True)
class FollowUp:
    """One command an income officer runs on a receipt after it arrived."""

    stat: str  # the count it adds to: allocations, refunds, transfers or reversals
    apply: Callable[[IncomeLedger], Outcome]


@dataclass
class DemoPlan:
    """Everything the demo will record, generated and checked; nothing saved yet."""

    days: int
    funds: list[Fund]  # sample funds missing from the chart
    receipts: list[RecordPayment]
    follow_ups: list[FollowUp]


@dataclass
class DemoProgress:
    """What is stored so far, in whole committed commands."""

    funds_to_add: int
    receipts_planned: int
    follow_ups_planned: int
    funds_added: bool = False
    receipts_done: int = 0  # stored, by this run or an earlier one
    receipts_new: int = 0  # recorded by this run
    follow_ups_done: int = 0
    stats: Counter[str] = field(default_factory=Counter)

    def describe(self) -> str:
        if not self.funds_to_add:
            funds = "the sample funds were already in the chart"
        elif self.funds_added:
            funds = f"the {self.funds_to_add} missing sample funds were added"
        else:
            funds = f"the {self.funds_to_add} missing sample funds were not added"
        return (
            f"{funds}; {self.receipts_done} of {self.receipts_planned} receipts are stored "
            f"({self.receipts_new} recorded by this run); {self.follow_ups_done} of "
            f"{self.follow_ups_planned} follow-up commands (allocations, refunds, transfers, "
            "reversals) are done"
        )


class DemoInterrupted(RuntimeError):
    """Saving stopped part-way; `progress` says exactly what is stored."""

    def __init__(self, progress: DemoProgress, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.progress = progress
        self.cause = cause


def plan_demo(ledger: IncomeLedger, *, days: int, receipts_per_day: int, seed: int) -> DemoPlan:
    """Generate the demo and check every receipt and every command's context against the
    ledger's rules. Saves nothing: a refusal here (a LedgerError) means nothing is stored."""
    rng = random.Random(seed)
    chart = copy.deepcopy(ledger.chart())
    missing = [fund for fund in SAMPLE_FUNDS if fund.code not in chart.funds]
    for fund in missing:
        chart.add_fund(fund, SETUP.actor, FUNDS_REASON)
    funds = {fund.code: fund for fund in SAMPLE_FUNDS}
    receipts = [
        _receipt(rng, funds, day, seed, day_index, n)
        for day_index, day in enumerate(business_days(days, datetime.now(UK).date()))
        for n in range(receipts_per_day)
    ]
    follow_ups = []
    for start in range(0, len(receipts), BATCH_SIZE):
        for payment in ledger.check_payments(receipts[start : start + BATCH_SIZE], IMPORT, chart):
            follow_up = _follow_up(rng, funds, payment, seed)
            if follow_up is not None:
                follow_ups.append(follow_up)
    return DemoPlan(days, missing, receipts, follow_ups)


def record_demo(ledger: IncomeLedger, plan: DemoPlan) -> DemoProgress:
    """Save a checked plan: the funds in one write, the receipts in batches of BATCH_SIZE
    (each all or nothing), then each follow-up. A failure raises DemoInterrupted."""
    progress = DemoProgress(len(plan.funds), len(plan.receipts), len(plan.follow_ups))
    progress.stats["days"] = plan.days
    try:
        if plan.funds:
            ledger.add_funds(plan.funds, SETUP, reason=FUNDS_REASON)
        progress.funds_added = True
        for start in range(0, len(plan.receipts), BATCH_SIZE):
            outcomes = ledger.record_payments(plan.receipts[start : start + BATCH_SIZE], IMPORT)
            progress.receipts_done += len(outcomes)
            progress.receipts_new += sum(outcome.recorded for outcome in outcomes)
        progress.stats["receipts"] = progress.receipts_done
        for follow_up in plan.follow_ups:
            _apply(ledger, follow_up, progress.stats)
            progress.follow_ups_done += 1
    except (Exception, KeyboardInterrupt) as error:  # Ctrl-C too: say what is stored
        raise DemoInterrupted(progress, error) from error
    return progress


def _apply(ledger: IncomeLedger, follow_up: FollowUp, stats: Counter[str]) -> None:
    """Run one follow-up. A rule refusing it stores nothing and is part of a realistic day;
    a concurrent writer is not, and stops the demo so that a re-run applies it."""
    try:
        follow_up.apply(ledger)
    except ConcurrentUpdate:
        raise
    except LedgerError:
        stats["skipped"] += 1
        return
    stats[follow_up.stat] += 1


def _receipt(
    rng: random.Random, funds: dict[str, Fund], day: date, seed: int, day_index: int, n: int
) -> RecordPayment:
    channel = rng.choices(list(CHANNEL_WEIGHTS), weights=list(CHANNEL_WEIGHTS.values()))[0]
    fund = funds[rng.choices(list(FUND_WEIGHTS), weights=list(FUND_WEIGHTS.values()))[0]]
    reference = make_reference(fund, rng)
    roll = rng.random()
    if roll < 0.08:
        reference = mistype(reference, rng)
    elif roll < 0.10:
        reference = ""
    low, high = AMOUNT_RANGES_PENCE[fund.code]
    amount = rng.randint(low, high)
    if fund.code == "PCN":
        amount = rng.choice([3_500, 7_000, 11_000])
    local = datetime.combine(day, time(8, 0), tzinfo=UK) + timedelta(
        seconds=rng.randint(0, 10 * 3600)
    )
    hint = fund.code if channel in ("govuk_pay", "telephone", "card") else None
    payer = None
    if channel in ("bank_transfer", "cheque") and rng.random() < 0.5:
        payer = PayerDetails(name=f"{rng.choice('ABCDEFGHJKLMNPRSTW')}. {rng.choice(SURNAMES)}")
    return RecordPayment(
        channel=channel,
        amount_pence=amount,
        reference=reference,
        received_at=local.astimezone(UTC),
        fund_code=hint,
        external_id=f"demo-{seed}-{day_index}-{n}",
        payer=payer,
    )


def _follow_up(
    rng: random.Random, funds: dict[str, Fund], payment: dict[str, Any], seed: int
) -> FollowUp | None:
    """What an income team does next: clear suspense, refund, transfer, reverse.

    Keyed by the payment, so a re-run repeats nothing; the context is built (and so
    checked) here, before anything is saved. Draws from `rng` exactly as earlier versions
    did, so a ledger they filled gets nothing new."""
    ctx = CommandContext(rng.choice(OFFICERS), f"demo-{seed}-{payment['payment_id']}")
    pid = UUID(payment["payment_id"])
    roll = rng.random()
    if payment["status"] == "suspense":
        if rng.random() >= 0.6:
            return None
        fund = funds[rng.choice(["CT", "HRA", "SUN"])]
        lines = [(fund.code, make_reference(fund, rng), payment["unallocated_pence"])]
        reason = "payer confirmed the account by phone"
        return FollowUp("allocations", lambda led: led.allocate(pid, lines, ctx, reason=reason))
    reversal = REVERSALS.get(payment["channel"])
    if reversal is not None and roll < reversal[0]:
        _, kind, why = reversal
        return FollowUp("reversals", lambda led: led.reverse(pid, kind, ctx, reason=why))
    if roll >= 0.07 or not payment["allocations"]:
        return None
    line = payment["allocations"][0]
    source = (line["fund_code"], line["reference"])
    if roll < 0.04:
        amount = max(1, line["amount_pence"] // rng.choice([1, 2, 4]))
        why = "overpayment: account in credit"
        return FollowUp(
            "refunds", lambda led: led.refund(pid, amount, ctx, reason=why, source=source)
        )
    target = funds["CT"] if line["fund_code"] != "CT" else funds["HRA"]
    destination = (target.code, make_reference(target, rng))
    moved = line["amount_pence"]
    why = "payer paid the wrong account"
    return FollowUp(
        "transfers", lambda led: led.transfer(pid, source, destination, moved, ctx, reason=why)
    )


def summarise(ledger: IncomeLedger) -> dict[str, Any]:
    """Balances straight from the events (a replay to now), to hold the read model against."""
    result = replay_balances(ledger.read_events(), as_at=datetime.max.replace(tzinfo=UTC))
    accounts: defaultdict[str, int] = defaultdict(int)
    for account, pence in result.accounts.items():
        group = account.split(":")[0]
        accounts[group if group in ("income", "vat") else account] += pence
    return {
        "events": result.events_read,
        "received_by_channel_pence": {
            account.removeprefix("cash:"): pence
            for account, pence in sorted(result.accounts.items())
            if account.startswith("cash:")
        },
        "fund_balances_pence": {
            code: pence for code, pence in sorted(result.funds.items()) if pence
        },
        "suspense_pence": result.suspense_pence,
        "accounts_pence": dict(sorted(accounts.items())),
        "trial_balance_pence": result.trial_balance_pence,
    }
