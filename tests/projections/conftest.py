from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest

from application.ledger import CommandContext, IncomeLedger, RecordPayment
from domain.errors import LedgerError
from income_ledger.bootstrap import build_projection
from projections.runner import Projection, ProjectionRunner
from tests.domain.helpers import CT_REF, CT_REF_2, HRA_REF, SUN_REF

ACCOUNTS = [("CT", CT_REF), ("CT", CT_REF_2), ("SUN", SUN_REF), ("HRA", HRA_REF)]
CHANNELS = ["cash", "cheque", "govuk_pay", "direct_debit", "allpay"]


@pytest.fixture
def projection(ledger: IncomeLedger, settings) -> Iterator[Projection]:
    projection = build_projection(settings, ledger, page_size=50)
    yield projection
    projection.engine.dispose()


@pytest.fixture
def fast_runner(projection: Projection) -> Iterator[ProjectionRunner]:
    """A runner that retries within a fifth of a second; stopped (and its thread joined)
    after the test."""
    runner = ProjectionRunner(projection, idle_wait_s=0.05, retry_s=0.05, max_retry_s=0.2)
    yield runner
    runner.stop()
    for thread in threading.enumerate():
        if thread.name == "projection-runner":
            thread.join(timeout=10)


def random_workload(ledger: IncomeLedger, seed: int, receipts: int = 60) -> None:
    """Receipts on every channel, then allocations, transfers, refunds and reversals."""
    rng = random.Random(seed)
    ctx = CommandContext("officer:workload")
    ids = []
    for n in range(receipts):
        reference = rng.choice([ref for _, ref in ACCOUNTS] + ["JUNK", "12345678"])
        outcome = ledger.record_payment(
            RecordPayment(
                rng.choice(CHANNELS), rng.randint(1, 50_000), reference, external_id=f"w{seed}-{n}"
            ),
            ctx,
        )
        ids.append(outcome.payment_id)
    for _ in range(receipts * 2):
        pid = rng.choice(ids)
        payment = ledger.get_payment(pid)
        fund, reference = rng.choice(ACCOUNTS)
        try:
            roll = rng.random()
            if payment["unallocated_pence"] and roll < 0.4:
                amount = rng.randint(1, payment["unallocated_pence"])
                ledger.allocate(pid, [(fund, reference, amount)], ctx, "advice")
            elif payment["allocations"] and roll < 0.6:
                line = rng.choice(payment["allocations"])
                ledger.transfer(
                    pid,
                    (line["fund_code"], line["reference"]),
                    (fund, reference),
                    rng.randint(1, line["amount_pence"]),
                    ctx,
                    "wrong account",
                )
            elif roll < 0.8:
                ledger.refund(pid, rng.randint(1, 5_000), ctx, "overpaid")
            elif roll < 0.85:
                ledger.reverse(pid, "chargeback", ctx, "dispute lost")
            else:
                ledger.note(pid, "called payer", ctx)
        except LedgerError:
            pass
