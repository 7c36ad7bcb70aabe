"""`payments erase-payer` on both backends; the ledger still verifies afterwards."""

from __future__ import annotations

import json

from tests.cli.test_cli import as_json, cli  # noqa: F401  (the fixture)
from tests.domain.helpers import CT_REF


def test_erase_payer_records_it_and_both_verifications_still_pass(cli) -> None:  # noqa: F811
    pid = as_json(
        cli(
            "payments",
            "record",
            "--channel",
            "cheque",
            "--amount",
            "42.00",
            "--reference",
            CT_REF,
            "--payer-name",
            "A. Patel",
            "--json",
        )
    )["payment"]["payment_id"]
    cli("project", "--once")
    cli("audit", "chain")
    assert "--reason" in cli("payments", "erase-payer", pid, code=2).output
    erased = cli("payments", "erase-payer", pid, "--reason", "erasure request", "--actor", "sup:x")
    assert f"erased the payer details of payment {pid}" in erased.stdout
    assert "nothing erased" in cli("payments", "erase-payer", pid, "--reason", "again").stdout
    shown = as_json(cli("payments", "show", pid, "--json"))
    assert shown["payer"] is None
    assert [(e["action"], e["actor"]) for e in shown["history"]][-1] == (
        "PayerDetailsErased",
        "sup:x",
    )
    assert (
        "no payment with id"
        in cli(
            "payments",
            "erase-payer",
            "00000000-0000-4000-8000-000000000000",
            "--reason",
            "r",
            code=2,
        ).output
    )

    cli("project", "--once")
    cli("audit", "chain")
    assert json.loads(cli("audit", "verify", "--json").stdout)["ok"] is True
    assert json.loads(cli("projections", "verify", "--json").stdout)["ok"] is True
