"""The read model's money figures are sums of postings, for random payment histories.

`domain.postings.postings_for` is the one source of money movements. The random histories
of the domain's property test (every channel, card money held in clearing, provider fees and
payouts) are projected by the page projector into an in-memory SQLite read model, whole and
a few events a page. Its fund balances, channel totals, daily takings and payment rows must
equal sums of the same events' postings, picked by account and movement as written out
here, and must agree with the independent auditor model and with the payments themselves.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import date
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule
from sqlalchemy import create_engine, select

from domain.cashups import CashUp, Count, compare
from domain.payment import Channel, ClearingItem, Payment, ReversalKind
from domain.postings import SUSPENSE, VAT_OUTPUT, Movement, Posting, effective_at, postings_for
from projections.ledger_view import PageProjector, uk_date
from projections.schema import SUSPENSE_FUND, ReadModel, read_model
from tests.domain.helpers import CT_REF, receive
from tests.domain.test_ledger_properties import ACCOUNTS, LedgerMachine

Figures = dict[Any, Counter]

# fund_balances: the money a movement credits (+) or debits (-) to a fund's income and VAT
FUND_COLUMNS = {
    "allocated_pence": {Movement.ALLOCATION: 1, Movement.ALLOCATION_ON_ARRIVAL: 1},
    "transfers_in_pence": {Movement.TRANSFER_IN: 1},
    "transfers_out_pence": {Movement.TRANSFER_OUT: -1},
    "refunds_pence": {Movement.REFUND: -1},
    "reversals_pence": {Movement.REVERSAL: -1},
}
# channel_totals: (movement, kind of account) -> column, and the sign of the posting there
CHANNEL_COLUMNS = {
    (Movement.RECEIPT, "cash"): ("received_pence", 1),
    (Movement.RECEIPT, "clearing"): ("received_pence", 1),
    (Movement.REFUND, "refunds"): ("refunds_pence", -1),
    (Movement.REVERSAL, "reversals"): ("reversals_pence", -1),
}
# payments: a payment's money paid back, credited to its channel's accounts
PAID_BACK_COLUMNS = {
    (Movement.REFUND, "refunds"): "refunded_pence",
    (Movement.REVERSAL, "reversals"): "reversed_pence",
}


def project(events: Sequence[Any], page_size: int) -> dict[str, Figures]:
    """The events projected a page at a time; the money tables read back by key."""
    model = read_model()
    engine = create_engine("sqlite://")
    model.metadata.create_all(engine)
    page = list(enumerate(events, start=1))
    with engine.begin() as connection:
        for start in range(0, len(page), page_size):
            PageProjector(model).apply(connection, page[start : start + page_size])
        tables = read_tables(connection, model)
    engine.dispose()
    return tables


def read_tables(connection: Any, model: ReadModel) -> dict[str, Figures]:
    keys = {
        "fund_balances": ("fund_code",),
        "channel_totals": ("channel",),
        "daily_takings": ("business_date", "channel", "fund_code"),
        "payments": ("payment_id",),
        "payment_allocations": ("payment_id", "fund_code", "reference"),
    }
    tables: dict[str, Figures] = {}
    for name, key in keys.items():
        table = getattr(model, name)
        pence = [c.name for c in table.columns if c.name.endswith(("_pence", "_count"))]
        tables[name] = {
            tuple(row[k] for k in key): Counter({c: row[c] for c in pence if row[c]})
            for row in connection.execute(select(table)).mappings()
        }
    return tables


def figures_from_postings(events: Sequence[Any]) -> dict[str, Figures]:
    """What each money column means, as a sum over the events' postings."""
    funds: Figures = defaultdict(Counter)
    channels: Figures = defaultdict(Counter)
    takings: Figures = defaultdict(Counter)
    payments: Figures = defaultdict(Counter)
    lines: Figures = defaultdict(Counter)
    received: dict[str, Payment.Received] = {}
    fund_on_arrival: dict[str, str] = {}
    for event in events:
        payment_id = str(event.originator_id)
        if isinstance(event, Payment.Received):
            received[payment_id] = event
        receipt = received[payment_id]
        paid_back: set[tuple[Any, ...]] = set()
        for posting in postings_for(event):
            movement, pence = posting.movement, posting.amount_pence
            kind = posting.account.split(":")[0]
            if (movement, kind) in CHANNEL_COLUMNS:
                column, sign = CHANNEL_COLUMNS[(movement, kind)]
                channels[(receipt.channel,)][column] += sign * pence
            if (movement, kind) in PAID_BACK_COLUMNS:
                payments[(payment_id,)][PAID_BACK_COLUMNS[(movement, kind)]] -= pence
            if posting.account == SUSPENSE:
                holder = SUSPENSE_FUND
                payments[(payment_id,)]["unallocated_pence"] -= pence
                if movement is Movement.RECEIPT:
                    payments[(payment_id,)]["amount_pence"] -= pence
            elif posting.fund_code:
                holder = posting.fund_code
                add_to_fund(funds[(holder,)], posting)
                payments[(payment_id,)]["allocated_pence"] -= pence
                line = lines[(payment_id, holder, posting.reference)]
                line["amount_pence"] -= pence
                line["vat_pence"] -= pence if posting.account == VAT_OUTPUT else 0
                if movement is Movement.ALLOCATION_ON_ARRIVAL:
                    fund_on_arrival[payment_id] = holder
            else:
                continue
            if movement in (Movement.RECEIPT, Movement.ALLOCATION_ON_ARRIVAL):
                key = (uk_date(receipt.received_at), receipt.channel, holder)
                takings[key]["received_pence"] -= pence
                takings[key]["vat_pence"] -= pence if posting.account == VAT_OUTPUT else 0
            elif movement in (Movement.REFUND, Movement.REVERSAL):
                key = (uk_date(effective_at(event)), receipt.channel, holder)
                takings[key][f"{movement}s_pence"] += pence
                paid_back.add((movement, key, posting.reference))
        for movement, key, _ in paid_back:  # one refund or reversal per line or suspense
            takings[key][f"{movement}s_count"] += 1
    for payment_id, receipt in received.items():
        channels[(receipt.channel,)]["receipts_count"] += 1
        fund = fund_on_arrival.get(payment_id, SUSPENSE_FUND)
        takings[(uk_date(receipt.received_at), receipt.channel, fund)]["receipts_count"] += 1
    for row in [*channels.values(), *takings.values()]:
        row["net_pence"] = row["received_pence"] - row["refunds_pence"] - row["reversals_pence"]
    return {
        "fund_balances": funds,
        "channel_totals": channels,
        "daily_takings": takings,
        "payments": payments,
        "payment_allocations": lines,
    }


def add_to_fund(fund: Counter, posting: Posting) -> None:
    """Income held by a fund is a credit: minus its postings."""
    fund["balance_pence"] -= posting.amount_pence
    fund["vat_pence" if posting.account == VAT_OUTPUT else "net_pence"] -= posting.amount_pence
    for column, signs in FUND_COLUMNS.items():
        fund[column] -= signs.get(posting.movement, 0) * posting.amount_pence


def totals(figures: Figures) -> Counter:
    """Column totals over rows (Counter's own + would drop negative sums)."""
    total: Counter = Counter()
    for row in figures.values():
        total.update(row)
    return total


def nonzero(tables: dict[str, Figures]) -> dict[str, Figures]:
    """Tables without their zero figures, and without rows of zeros only."""
    kept: dict[str, Figures] = {}
    for name, rows in tables.items():
        kept[name] = {}
        for key, row in rows.items():
            figures = Counter({column: value for column, value in row.items() if value})
            if figures:
                kept[name][key] = figures
    return kept


class ProjectedLedger(LedgerMachine):
    @rule(amount=st.integers(1, 50_000), account=st.sampled_from([*ACCOUNTS, ("-", "JUNK")]))
    def receive_card_payment(self, amount: int, account: tuple[str, str]) -> None:
        """Card money held by its provider, so that fees and payouts (settling refunds and
        reversals) come often."""
        self.receive_payment(amount, account, Channel.GOVUK_PAY)

    def teardown(self) -> None:
        events = getattr(self, "events", [])
        if not events:
            return
        expected = nonzero(figures_from_postings(events))
        for page_size in (len(events), 3):
            assert nonzero(project(events, page_size)) == expected, page_size
        self.agrees_with_the_auditor(expected)

    def agrees_with_the_auditor(self, expected: dict[str, Figures]) -> None:
        """Where the auditor model and the payments say the same things another way."""
        channels = totals(expected["channel_totals"])
        assert channels["received_pence"] == sum(m.received for m in self.auditor)
        assert channels["refunds_pence"] == sum(m.refunded for m in self.auditor)
        assert channels["reversals_pence"] == sum(m.reversed for m in self.auditor)
        takings = totals(expected["daily_takings"])
        assert takings["receipts_count"] == len(self.payments) == channels["receipts_count"]
        for column in ("received_pence", "refunds_pence", "reversals_pence", "net_pence"):
            assert takings[column] == channels[column], column
        held: Counter = Counter()
        for model in self.auditor:
            for (fund, _), pence in model.lines.items():
                held[fund] += pence
        funds = expected["fund_balances"]
        balances = {fund: row["balance_pence"] for (fund,), row in funds.items()}
        assert {k: v for k, v in balances.items() if v} == {k: v for k, v in held.items() if v}
        for row in funds.values():
            assert row["balance_pence"] == (
                row["allocated_pence"]
                + row["transfers_in_pence"]
                - row["transfers_out_pence"]
                - row["refunds_pence"]
                - row["reversals_pence"]
            )
        for payment in self.payments:
            row = expected["payments"].get((str(payment.id),), Counter())
            assert row["amount_pence"] == payment.amount_pence
            assert row["allocated_pence"] == payment.allocated_pence
            assert row["unallocated_pence"] == payment.unallocated_pence
            assert row["refunded_pence"] == payment.refunded_pence
            assert row["reversed_pence"] == payment.reversed_pence


ProjectedLedger.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestFiguresAreSumsOfPostings = ProjectedLedger.TestCase


def test_provider_fees_payouts_and_cash_up_differences_are_no_receipts_or_refunds() -> None:
    """A payout's debits of `refunds:` and `reversals:` settle money already paid back, and
    fees, payouts and a till's over/short move no payer's money: none of them changes a
    channel's, a day's, a fund's or a payment's figures."""
    refunded = receive(amount_pence=10_000, reference=CT_REF, channel=Channel.GOVUK_PAY)
    refunded.refund(amount_pence=2_500, fund_code="CT", reference=CT_REF, actor="o", reason="r")
    refunded.charge_fee(100, kind=ClearingItem.CARD_FEE, actor="o", reason="r")
    reversed_ = receive(amount_pence=4_000, reference="JUNK", channel=Channel.GOVUK_PAY)
    reversed_.reverse(kind=ReversalKind.CHARGEBACK, actor="o", reason="r")
    payer_money = refunded.collect_events() + reversed_.collect_events()
    for payment in (refunded, reversed_):
        payment.settle(None, payout="B1", actor="o", reason="r")
    day = date(2026, 3, 31)
    count = Count("CIVIC", "T1", day, {1000: 3}, (), "BAG-1").checked(day)
    cashup = CashUp.start("CIVIC", "T1", day, "officer:a")
    cashup.submit(
        count, compare(count, {"cash": 2_000}, ("cash",)), actor="officer:a", reason="counted"
    )
    cashup.approve(actor="supervisor:b")
    treasury = refunded.collect_events() + reversed_.collect_events() + cashup.collect_events()
    moved = {(p.movement, p.account) for e in treasury for p in postings_for(e)}
    assert {
        (Movement.PAYOUT, "refunds:govuk_pay"),
        (Movement.PAYOUT, "reversals:govuk_pay"),
        (Movement.OVER_SHORT, "cash:cash"),
    } <= moved
    before = project(payer_money, len(payer_money))
    after = project(payer_money + treasury, 2)
    for table in ("fund_balances", "channel_totals", "daily_takings", "payments"):
        assert after[table] == before[table], table
    assert before["channel_totals"][("govuk_pay",)] == Counter(
        receipts_count=2,
        received_pence=14_000,
        refunds_pence=2_500,
        reversals_pence=4_000,
        net_pence=7_500,
    )
