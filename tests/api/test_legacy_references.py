"""A reference recorded before references were folded (2026-12-01) is kept as recorded:
full-width digits, a zero-width space. Whichever way it was recorded and is typed, a person
finds its account and its payments."""

from __future__ import annotations

import pytest

from application.ledger import CommandContext
from tests.api.conftest import auth
from tests.api.test_payments_api import record
from tests.domain.helpers import CT_REF, SUN_REF, references_unfolded

WIDE = "".join(chr(ord(digit) - ord("0") + 0xFF10) for digit in CT_REF)
ZERO_WIDTH = f"{CT_REF[:4]}\u200b{CT_REF[4:]}"


def record_as_before_folding(client, ledger, monkeypatch, reference: str) -> dict:
    """What release 0.1.0 recorded: its fund rule took \\d (full-width digits too) and the
    reference was kept unfolded."""
    ledger.amend_fund(
        "CT",
        {"reference_rule": {"min_length": 8, "max_length": 9, "pattern": "[\\d\u200b]{8,9}"}},
        CommandContext("supervisor:test"),
        "references as 0.1.0 took them",
    )
    with references_unfolded(monkeypatch):
        response = record(client, reference=reference, external_id=f"old-{reference}")
    assert response.status_code == 201, response.text
    payment = response.json()["payment"]
    assert (payment["reference"], payment["status"]) == (reference, "allocated")  # as recorded
    return response.json()


@pytest.mark.parametrize("recorded", [WIDE, ZERO_WIDTH], ids=["full-width", "zero-width"])
@pytest.mark.parametrize("typed", [CT_REF, WIDE, ZERO_WIDTH], ids=["ascii", "wide", "zwsp"])
def test_an_account_recorded_unfolded_is_found_however_it_is_typed(
    client, ledger, monkeypatch, recorded: str, typed: str
) -> None:
    position = record_as_before_folding(client, ledger, monkeypatch, recorded)["position"]
    officer = auth("officer")
    account = client.get(f"/accounts/CT/{typed}?min_position={position}", headers=officer)
    assert account.status_code == 200, account.text
    assert account.json()["balance_pence"] == 10_000
    assert account.json()["reference"] == CT_REF
    found = client.get("/payments", params={"reference": typed}, headers=officer).json()
    assert [item["reference"] for item in found["items"]] == [recorded]


def test_one_account_holds_what_was_recorded_unfolded_and_what_is_recorded_now(
    client, ledger, monkeypatch
) -> None:
    """The same payer paid before 2026-12-01 and since: one account, one running balance."""
    old = record_as_before_folding(client, ledger, monkeypatch, WIDE)["payment"]
    new = record(client, reference=WIDE, amount_pence=2_500, external_id="new")
    assert new.json()["payment"]["reference"] == CT_REF  # folded now
    position = new.json()["position"]
    officer = auth("officer")
    for typed in (CT_REF, WIDE):
        account = client.get(f"/accounts/CT/{typed}?min_position={position}", headers=officer)
        assert account.json()["balance_pence"] == 12_500
        assert [line["balance_pence"] for line in account.json()["statement"]] == [10_000, 12_500]
        assert account.json()["total"] == 2
        second = client.get(f"/accounts/CT/{typed}?limit=1&offset=1", headers=officer).json()
        assert [line["balance_pence"] for line in second["statement"]] == [12_500]
        assert (second["total"], second["balance_pence"]) == (2, 12_500)
    # The officer moves the old payment's money typing the reference in ASCII.
    moved = client.post(
        f"/payments/{old['payment_id']}/transfers",
        json={
            "from": {"fund_code": "CT", "reference": CT_REF},
            "to": {"fund_code": "SUN", "reference": SUN_REF},
            "amount_pence": 1_000,
            "reason": "paid the wrong account",
        },
        headers=officer,
    )
    assert moved.status_code == 201, moved.text
    position = moved.json()["position"]
    account = client.get(f"/accounts/CT/{CT_REF}?min_position={position}", headers=officer)
    assert account.json()["balance_pence"] == 11_500
