"""Refund approval through the application, on both backends: the limit comes from the
settings, and two supervisors racing to approve one request never see a 404."""

from __future__ import annotations

import time
from collections import Counter
from uuid import UUID

import pytest

from api.problems import status_for
from application.ledger import CommandContext, IncomeLedger, RecordPayment
from domain.errors import (
    ConcurrentUpdate,
    RefundRequestAlreadyDecided,
    RefundRequestStale,
)
from income_ledger.bootstrap import build_ledger
from income_ledger.settings import Settings
from tests.application.test_concurrency import _race
from tests.domain.helpers import CT_REF

LIMIT_PENCE = 5_000
OFFICER = CommandContext("officer:a")
LATE_S = 1.0


@pytest.fixture
def limited(ledger: IncomeLedger, settings: Settings):
    """A second ledger on the same database, its limit set the way an operator sets it."""
    limited = build_ledger(settings.model_copy(update={"refund_approval_limit_pence": LIMIT_PENCE}))
    yield limited
    limited.close()


def _receipt(ledger: IncomeLedger, reference: str = "JUNK") -> UUID:
    command = RecordPayment("cheque", 10_000, reference)
    return ledger.record_payment(command, OFFICER).payment_id


def test_the_limit_comes_from_the_settings_and_is_cumulative(limited) -> None:
    pid = _receipt(limited, CT_REF)
    assert limited.refund(pid, 3_000, OFFICER, "overpaid").refund_request_id is None
    waiting = limited.refund(pid, 2_001, OFFICER, "overpaid again")
    assert waiting.recorded and waiting.refund_request_id is not None
    assert waiting.payment["refunded_pence"] == 3_000
    [pending] = limited.pending_refunds()
    assert pending["payment_id"] == str(pid) and pending["amount_pence"] == 2_001
    approved = limited.approve_refund(pid, pending["request_id"], CommandContext("supervisor:b"))
    assert approved.payment["refunded_pence"] == 5_001 and limited.pending_refunds() == []


def test_a_stale_request_is_refused_and_nothing_moves(limited) -> None:
    pid = _receipt(limited)
    request_id = limited.refund(pid, 6_000, OFFICER, "overpaid").refund_request_id
    limited.allocate(pid, [("CT", CT_REF, 10_000)], OFFICER, "advice came")
    with pytest.raises(RefundRequestStale):
        limited.approve_refund(pid, request_id, CommandContext("supervisor:b"))
    payment = limited.get_payment(pid)
    assert payment["allocated_pence"] == 10_000 and payment["refunded_pence"] == 0
    assert status_for(RefundRequestStale("x"))[0] == 409


def _approve(barrier, url: str, payment_id: str, request_id: str, who: str, late: bool) -> str:
    ledger = build_ledger(Settings(database_url=url))
    try:
        ledger.repository.get(UUID(payment_id))  # warm up: load before the race starts
        barrier.wait()
        if late:  # arrives just after the winner has saved: sees the request decided
            time.sleep(LATE_S)
        ledger.approve_refund(UUID(payment_id), request_id, CommandContext(who))
        return "approved"
    except (ConcurrentUpdate, RefundRequestAlreadyDecided) as error:
        return f"{error.code} {status_for(error)[0]}"
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    finally:
        ledger.close()


def test_supervisors_racing_to_approve_one_request_get_409_not_404(limited, settings) -> None:
    pid = _receipt(limited, CT_REF)
    request_id = limited.refund(pid, 6_000, OFFICER, "overpaid").refund_request_id
    racers = [
        (settings.database_url, str(pid), request_id, f"supervisor:{n}", n >= 3) for n in range(5)
    ]
    results = Counter(_race(_approve, racers))
    assert results["approved"] == 1, results
    # Whoever loaded before the winner saved conflicts on the version; whoever loaded after
    # finds the request decided. Both are 409, never 404.
    assert results["refund_request_already_decided 409"] >= 2, results
    assert results["refund_request_already_decided 409"] + results["concurrent_update 409"] == 4
    assert limited.get_payment(pid)["refunded_pence"] == 6_000


def _refund(barrier, url: str, payment_id: str, who: str) -> str:
    ledger = build_ledger(Settings(database_url=url, refund_approval_limit_pence=LIMIT_PENCE))
    try:
        ledger.repository.get(UUID(payment_id))
        barrier.wait()
        outcome = ledger.refund(UUID(payment_id), 2_000, CommandContext(who), "split refund")
        return "requested" if outcome.refund_request_id else "refunded"
    except ConcurrentUpdate as error:
        return error.code
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    finally:
        ledger.close()


def test_racing_small_refunds_never_add_up_past_the_limit(limited, settings) -> None:
    pid = _receipt(limited, CT_REF)
    racers = [(settings.database_url, str(pid), f"officer:{n}") for n in range(4)]
    results = Counter(_race(_refund, racers))
    assert set(results) <= {"refunded", "requested", "concurrent_update"}, results
    payment = limited.get_payment(pid)
    assert payment["refunded_pence"] == 2_000 * results["refunded"] <= LIMIT_PENCE
