"""Demo data: a few business days of a council's income, so a new user sees a real ledger.

Deterministic for a seed: external ids and idempotency keys derive from it, so running the
demo twice with the same seed records nothing new.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from application.ledger import CommandContext, IncomeLedger, RecordPayment
from application.payer_details import PayerDetails
from domain.errors import LedgerError
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


def run_demo(
    ledger: IncomeLedger, *, days: int, receipts_per_day: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    setup = CommandContext("system:demo")
    existing = {fund["code"] for fund in ledger.funds()}
    for fund in SAMPLE_FUNDS:
        if fund.code not in existing:
            ledger.add_fund(fund, setup, reason="sample chart of funds")
    funds = {fund.code: fund for fund in SAMPLE_FUNDS}
    stats: Counter[str] = Counter(days=days)
    recorded = []
    for day_index, day in enumerate(business_days(days, datetime.now(UK).date())):
        commands = [_receipt(rng, funds, day, seed, day_index, n) for n in range(receipts_per_day)]
        outcomes = ledger.record_payments(commands, CommandContext("integration:demo-import"))
        recorded.extend(outcomes)
        stats["receipts"] += len(outcomes)
    for outcome in recorded:
        _follow_up(ledger, rng, funds, outcome.payment, seed, stats)
    return dict(stats)


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
    ledger: IncomeLedger,
    rng: random.Random,
    funds: dict[str, Fund],
    payment: dict[str, Any],
    seed: int,
    stats: Counter[str],
) -> None:
    """What an income team does next: clear suspense, refund, transfer, reverse."""
    officer = rng.choice(OFFICERS)
    key = f"demo-{seed}-{payment['payment_id']}"
    ctx = CommandContext(officer, key)
    payment_id = payment["payment_id"]
    from uuid import UUID

    pid = UUID(payment_id)
    roll = rng.random()
    try:
        if payment["status"] == "suspense":
            if rng.random() < 0.6:
                fund = funds[rng.choice(["CT", "HRA", "SUN"])]
                ledger.allocate(
                    pid,
                    [(fund.code, make_reference(fund, rng), payment["unallocated_pence"])],
                    ctx,
                    reason="payer confirmed the account by phone",
                )
                stats["allocations"] += 1
        elif payment["channel"] == "cheque" and roll < 0.15:
            ledger.reverse(pid, "returned_cheque", ctx, reason="cheque returned unpaid by bank")
            stats["reversals"] += 1
        elif payment["channel"] == "direct_debit" and roll < 0.05:
            ledger.reverse(pid, "direct_debit_return", ctx, reason="ARUDD: instruction cancelled")
            stats["reversals"] += 1
        elif payment["channel"] == "govuk_pay" and roll < 0.02:
            ledger.reverse(pid, "chargeback", ctx, reason="card dispute lost")
            stats["reversals"] += 1
        elif roll < 0.04 and payment["allocations"]:
            line = payment["allocations"][0]
            amount = max(1, line["amount_pence"] // rng.choice([1, 2, 4]))
            ledger.refund(
                pid,
                amount,
                ctx,
                reason="overpayment: account in credit",
                source=(line["fund_code"], line["reference"]),
            )
            stats["refunds"] += 1
        elif roll < 0.07 and payment["allocations"]:
            line = payment["allocations"][0]
            target = funds["CT"] if line["fund_code"] != "CT" else funds["HRA"]
            ledger.transfer(
                pid,
                (line["fund_code"], line["reference"]),
                (target.code, make_reference(target, rng)),
                line["amount_pence"],
                ctx,
                reason="payer paid the wrong account",
            )
            stats["transfers"] += 1
    except LedgerError:
        stats["skipped"] += 1


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
