"""Property-based tests of the ledger invariants against an independent in-memory auditor.

The auditor model knows nothing of events or postings: it tracks, per payment, how much is in
each allocation, in suspense, refunded and reversed, and decides by itself whether a command
must be accepted. The domain must agree with it after every step, and its postings must
balance per event and overall, and add up to the auditor's figures.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain.errors import LedgerError
from domain.payment import (
    CLEARING_CHANNELS,
    AllocationRequest,
    Channel,
    ClearingItem,
    Payment,
    ReversalKind,
)
from domain.postings import postings_for
from tests.domain.helpers import CT_REF, CT_REF_2, HRA_REF, SUN_REF, chart, receive

ACCOUNTS = [("CT", CT_REF), ("CT", CT_REF_2), ("SUN", SUN_REF), ("HRA", HRA_REF)]
amounts = st.integers(min_value=-5, max_value=20_000)


def near(limit: int) -> st.SearchStrategy[int]:
    """Amounts that probe a rule's boundary as often as arbitrary ones."""
    return st.one_of(amounts, st.integers(-1, 1).map(lambda d: limit + d), st.just(limit))


@dataclass
class AuditorPayment:
    received: int
    lines: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    suspense: int = 0
    refunded: int = 0
    reversed: int = 0
    # card-provider money (clearing channels only): fees kept, and what payouts paid in
    clearing: bool = False
    fees: int = 0
    settled_clearing: int = 0
    settled_refunds: int = 0
    settled_reversals: int = 0
    banked: int = 0


class LedgerMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.funds = chart()
        self.payments: list[Payment] = []
        self.auditor: list[AuditorPayment] = []
        self.events: list = []

    def _collect(self, payment: Payment) -> None:
        self.events.extend(payment.collect_events())

    def _attempt(self, index: int, must_succeed: bool, action) -> None:
        """Run a command; a rejected one must raise a LedgerError and change nothing."""
        payment = self.payments[index]
        before = (
            payment.version,
            dict(payment.lines),
            payment.unallocated_pence,
            payment.refunded_pence,
            payment.reversed_pence,
        )
        try:
            action(payment)
        except LedgerError:
            assert not must_succeed, "the auditor expected this command to be accepted"
            after = (
                payment.version,
                dict(payment.lines),
                payment.unallocated_pence,
                payment.refunded_pence,
                payment.reversed_pence,
            )
            assert after == before and not payment.pending_events
            return
        assert must_succeed, "the auditor expected this command to be refused"
        self._collect(payment)

    @rule(
        amount=st.integers(1, 50_000),
        account=st.sampled_from([*ACCOUNTS, ("-", "JUNK")]),
        channel=st.sampled_from(list(Channel)),
    )
    def receive_payment(self, amount: int, account: tuple[str, str], channel: Channel) -> None:
        payment = receive(
            amount_pence=amount, reference=account[1], channel=channel, funds=self.funds
        )
        model = AuditorPayment(received=amount, clearing=channel in CLEARING_CHANNELS)
        if account[0] == "-":
            model.suspense = amount
        else:
            model.lines[account] = amount
        self.payments.append(payment)
        self.auditor.append(model)
        self._collect(payment)

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), account=st.sampled_from(ACCOUNTS))
    def allocate(self, data, account) -> None:
        i = data.draw(st.integers(0, len(self.payments) - 1))
        model = self.auditor[i]
        amount = data.draw(near(model.suspense))
        ok = not model.reversed and 0 < amount <= model.suspense
        self._attempt(
            i,
            ok,
            lambda p: p.allocate(
                [(self.funds.fund(account[0]), AllocationRequest(account[0], account[1], amount))],
                actor="o",
                reason="r",
            ),
        )
        if ok:
            model.lines[account] += amount
            model.suspense -= amount

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), source=st.sampled_from(ACCOUNTS), destination=st.sampled_from(ACCOUNTS))
    def transfer(self, data, source, destination) -> None:
        i = data.draw(st.integers(0, len(self.payments) - 1))
        model = self.auditor[i]
        amount = data.draw(near(model.lines.get(source, 0)))
        ok = (
            not model.reversed
            and source != destination
            and amount > 0
            and model.lines.get(source, 0) >= amount
        )
        self._attempt(
            i,
            ok,
            lambda p: p.transfer(
                from_fund_code=source[0],
                from_reference=source[1],
                to_fund=self.funds.fund(destination[0]),
                to_reference=destination[1],
                amount_pence=amount,
                actor="o",
                reason="r",
            ),
        )
        if ok:
            model.lines[source] -= amount
            model.lines[destination] += amount

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), source=st.sampled_from([*ACCOUNTS, None]))
    def refund(self, data, source) -> None:
        i = data.draw(st.integers(0, len(self.payments) - 1))
        model = self.auditor[i]
        if source is None:
            held = [k for k, v in model.lines.items() if v]
            if model.suspense or not held:
                available, chosen = model.suspense, None
            elif len(held) == 1:
                available, chosen = model.lines[held[0]], held[0]
            else:
                available, chosen = -1, None
        else:
            available, chosen = model.lines.get(source, 0), source
        amount = data.draw(near(available))
        ok = not model.reversed and 0 < amount <= available
        self._attempt(
            i,
            ok,
            lambda p: p.refund(
                amount_pence=amount,
                actor="o",
                reason="r",
                fund_code=source[0] if source else None,
                reference=source[1] if source else None,
            ),
        )
        if ok:
            if chosen is None:
                model.suspense -= amount
            else:
                model.lines[chosen] -= amount
            model.refunded += amount

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), kind=st.sampled_from(list(ReversalKind)))
    def reverse(self, data, kind: ReversalKind) -> None:
        i = data.draw(st.integers(0, len(self.payments) - 1))
        model = self.auditor[i]
        remaining = model.suspense + sum(model.lines.values())
        ok = not model.reversed and remaining > 0
        self._attempt(i, ok, lambda p: p.reverse(kind=kind, actor="o", reason="r"))
        if ok:
            model.reversed = remaining
            model.suspense = 0
            model.lines.clear()

    @precondition(lambda self: self.payments)
    @rule(
        data=st.data(),
        amount=st.integers(-1, 500),
        kind=st.sampled_from([ClearingItem.CARD_FEE, ClearingItem.DISPUTE_FEE]),
    )
    def charge_fee(self, data, amount: int, kind: ClearingItem) -> None:
        i = data.draw(st.integers(0, len(self.payments) - 1))
        model = self.auditor[i]
        ok = model.clearing and amount > 0
        self._attempt(i, ok, lambda p: p.charge_fee(amount, kind=kind, actor="o", reason="r"))
        if ok:
            model.fees += amount

    @precondition(lambda self: self.payments)
    @rule(data=st.data())
    def pay_out(self, data) -> None:
        """A payout pays in all the provider still holds of a payment."""
        i = data.draw(st.integers(0, len(self.payments) - 1))
        model = self.auditor[i]
        self._attempt(
            i, model.clearing, lambda p: p.settle(None, payout="B1", actor="o", reason="r")
        )
        if model.clearing:
            clearing = model.received - model.fees - model.settled_clearing
            refunds = model.refunded - model.settled_refunds
            reversals = model.reversed - model.settled_reversals
            model.banked += clearing - refunds - reversals
            model.settled_clearing += clearing
            model.settled_refunds += refunds
            model.settled_reversals += reversals

    @invariant()
    def every_penny_is_in_exactly_one_place(self) -> None:
        for payment, model in zip(self.payments, self.auditor, strict=True):
            payment.check_invariant()
            assert payment.unallocated_pence == model.suspense >= 0
            assert payment.refunded_pence == model.refunded
            assert payment.reversed_pence == model.reversed
            held = {
                (line.fund_code, line.reference): line.amount_pence
                for line in payment.lines_with_money()
            }
            assert held == {k: v for k, v in model.lines.items() if v}
            assert all(v >= 0 for v in model.lines.values())

    @invariant()
    def postings_balance_and_agree_with_the_auditor(self) -> None:
        balances: dict[str, int] = defaultdict(int)
        gross_by_account: dict[tuple[str, str], int] = defaultdict(int)
        for event in self.events:
            postings = postings_for(event)
            assert sum(p.amount_pence for p in postings) == 0
            for posting in postings:
                balances[posting.account.split(":")[0]] += posting.amount_pence
                if posting.fund_code:
                    gross_by_account[(posting.fund_code, posting.reference)] -= posting.amount_pence
        assert sum(balances.values()) == 0
        models = self.auditor
        assert balances["cash"] == sum(m.received for m in models if not m.clearing)
        assert balances["clearing"] == sum(
            m.received - m.fees - m.settled_clearing for m in models if m.clearing
        )
        assert balances["card_fees"] + balances["dispute_fees"] == sum(m.fees for m in models)
        assert balances["bank"] == sum(m.banked for m in models)
        assert -balances["suspense"] == sum(m.suspense for m in models)
        assert -balances["refunds"] == sum(m.refunded - m.settled_refunds for m in models)
        assert -balances["reversals"] == sum(m.reversed - m.settled_reversals for m in models)
        expected: dict[tuple[str, str], int] = defaultdict(int)
        for model in self.auditor:
            for key, amount in model.lines.items():
                expected[key] += amount
        assert {k: v for k, v in gross_by_account.items() if v} == {
            k: v for k, v in expected.items() if v
        }


LedgerMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerInvariants = LedgerMachine.TestCase
