"""Fixtures for the auditor tools: the chain, and workloads whose dates are spread over time."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from application.ledger import CommandContext, IncomeLedger, RecordPayment
from domain.errors import LedgerError
from income_ledger.bootstrap import build_audit_chain
from projections.chain import AuditChain
from tests.conftest import cli_invoker
from tests.projections.conftest import ACCOUNTS, CHANNELS

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SPREAD = timedelta(days=60)


@pytest.fixture
def cli(ledger, database_url, monkeypatch):
    """Runs a command on the test database; `ledger` has set it up with the sample funds."""
    return cli_invoker(monkeypatch, database_url, actor="auditor:cli")


@pytest.fixture
def chain(ledger: IncomeLedger, settings) -> Iterator[AuditChain]:
    chain = build_audit_chain(settings, ledger, page_size=50)
    yield chain
    chain.engine.dispose()


def spread_workload(ledger: IncomeLedger, seed: int, receipts: int = 40) -> list[UUID]:
    """Receipts dated over two months, then moves of their money dated after them.

    Each payment's later movements take effect in date order, a few days apart, so the
    balances differ from one date to the next.
    """
    rng = random.Random(seed)
    ctx = CommandContext("officer:spread")
    ids: list[UUID] = []
    latest: dict[UUID, datetime] = {}
    for n in range(receipts):
        received_at = START + timedelta(minutes=rng.randrange(int(SPREAD.total_seconds() // 60)))
        reference = rng.choice([ref for _, ref in ACCOUNTS] + ["JUNK", "12345678"])
        outcome = ledger.record_payment(
            RecordPayment(
                rng.choice(CHANNELS),
                rng.randint(1, 50_000),
                reference,
                received_at=received_at,
                external_id=f"s{seed}-{n}",
            ),
            ctx,
        )
        ids.append(outcome.payment_id)
        latest[outcome.payment_id] = received_at
    for _ in range(receipts * 2):
        pid = rng.choice(ids)
        payment = ledger.get_payment(pid)
        effective = latest[pid] + timedelta(hours=rng.randint(1, 24 * 10))
        fund, reference = rng.choice(ACCOUNTS)
        try:
            roll = rng.random()
            if payment["unallocated_pence"] and roll < 0.4:
                amount = rng.randint(1, payment["unallocated_pence"])
                ledger.allocate(pid, [(fund, reference, amount)], ctx, "advice", effective)
            elif payment["allocations"] and roll < 0.6:
                line = rng.choice(payment["allocations"])
                ledger.transfer(
                    pid,
                    (line["fund_code"], line["reference"]),
                    (fund, reference),
                    rng.randint(1, line["amount_pence"]),
                    ctx,
                    "wrong account",
                    effective,
                )
            elif roll < 0.8:
                ledger.refund(pid, rng.randint(1, 5_000), ctx, "overpaid", effective=effective)
            elif roll < 0.85:
                ledger.reverse(pid, "chargeback", ctx, "dispute lost", effective)
            else:
                ledger.note(pid, "called payer", ctx)
                continue
            latest[pid] = effective
        except LedgerError:
            pass
    return ids


def execute(engine: Engine, sql: str, **parameters) -> None:
    """Change the database by hand, as someone with direct access to it would."""
    with engine.begin() as connection:
        connection.execute(text(sql), parameters)
