"""A payment provider's ids are identifiers, not card numbers (issue #14.5), on both backends."""

from __future__ import annotations

import pytest

from application.ledger import CommandContext, RecordPayment
from domain.errors import CardNumberRejected

LUHN_VALID_ID = "4111111111111111"


def test_a_providers_numeric_payment_id_is_recorded_though_it_passes_luhn(ledger) -> None:
    ctx = CommandContext("integration:test")
    outcome = ledger.record_payment(
        RecordPayment(
            channel="govuk_pay",
            amount_pence=100,
            reference="",
            external_id=LUHN_VALID_ID,
            external_id_from_provider=True,
        ),
        ctx,
    )
    assert outcome.recorded and outcome.payment["external_id"] == LUHN_VALID_ID
    typed = RecordPayment(channel="cash", amount_pence=100, reference="", external_id=LUHN_VALID_ID)
    with pytest.raises(CardNumberRejected):
        ledger.record_payment(typed, ctx)
