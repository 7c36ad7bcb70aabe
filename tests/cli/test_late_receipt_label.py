"""A late receipt's closed period is labelled as such when a payment is printed, not as
something its provider said (found in the day-close walkthrough)."""

from rich.console import Console

from income_ledger.cli import commands


def payment(details: dict) -> dict:
    return {
        "channel": "cheque",
        "amount_pence": 12_000,
        "reference": "12345679",
        "received_at": "2026-03-31T11:00:00+00:00",
        "status": "allocated",
        "suspense_reason": None,
        "allocated_pence": 12_000,
        "unallocated_pence": 0,
        "refunded_pence": 0,
        "reversed_pence": 0,
        "provider_details": details,
        "allocations": [],
        "pending_refunds": [],
    }


def shown(monkeypatch, details: dict) -> str:
    console = Console(record=True, width=200, emoji=False)
    monkeypatch.setattr(commands, "out", console)
    commands.print_payment(payment(details))
    return " ".join(console.export_text().split())


def test_a_late_receipts_period_is_not_called_the_provider(monkeypatch) -> None:
    text = shown(monkeypatch, {"relates_to_period": "2025-26 P12"})
    assert "relates to closed period 2025-26 P12 (late receipt)" in text
    assert "provider" not in text


def test_provider_details_beside_a_late_receipts_period(monkeypatch) -> None:
    text = shown(monkeypatch, {"relates_to_period": "2025-26 P12", "card_brand": "visa"})
    assert "relates to closed period 2025-26 P12" in text
    assert "provider: card_brand visa" in text
    assert "relates_to_period" not in text
