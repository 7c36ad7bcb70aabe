"""A negative amount reads "-£0.05" wherever the command line prints pounds, never "£-0.05"."""

from rich.console import Console

from income_ledger.cli import commands


def test_the_read_model_report_signs_pounds_as_people_read_them(monkeypatch):
    console = Console(record=True, width=200, emoji=False)
    monkeypatch.setattr(commands, "out", console)
    fund = {
        "fund_code": "SUN",
        "balance_pence": -5,
        "net_pence": -5,
        "vat_pence": 0,
        "refunds_pence": 1250,
        "reversals_pence": 0,
    }
    report = {
        "funds": [fund],
        "daily_takings": [],
        "suspense": {"count": 0, "total_pence": 0, "items": []},
    }

    commands.print_read_model(report)

    text = console.export_text()
    assert "-£0.05" in text
    assert "£12.50" in text
    assert "£-" not in text


def test_the_read_model_report_shows_a_days_over_short_and_the_counted_total(monkeypatch):
    console = Console(record=True, width=200, emoji=False)
    monkeypatch.setattr(commands, "out", console)
    takings = {"business_date": "2026-11-30", "channel": "cash", "net_pence": 44_932}
    report = {
        "funds": [],
        "daily_takings": [takings | {"fund_code": "CT"}],
        "over_short": [{"business_date": "2026-11-30", "channel": "cash", "over_short_pence": -50}],
        "suspense": {"count": 0, "total_pence": 0, "items": []},
    }

    commands.print_read_model(report)

    text = console.export_text()
    assert "cash over(+)/short(-)" in text and "-£0.50" in text
    assert "total counted" in text and "£448.82" in text


def test_the_read_model_report_separates_thousands_in_balances_and_takings(monkeypatch):
    """Finance staff read £14,809.19: the funds and the daily takings (once bare 14809.19
    under a "net £" title) both print pounds_text's sign, £ and thousands separators."""
    console = Console(record=True, width=200, emoji=False)
    monkeypatch.setattr(commands, "out", console)
    fund = {
        "fund_code": "CT",
        "balance_pence": 1_480_919,
        "net_pence": 1_480_919,
        "vat_pence": 0,
        "refunds_pence": 0,
        "reversals_pence": 123_456,
    }
    report = {
        "funds": [fund],
        "daily_takings": [
            {"business_date": "2026-11-30", "channel": "cash", "net_pence": 1_480_919},
            {"business_date": "2026-11-30", "channel": "cheque", "net_pence": -123_456},
        ],
        "suspense": {"count": 0, "total_pence": 0, "items": []},
    }

    commands.print_read_model(report)

    text = console.export_text()
    assert text.count("£14,809.19") == 3  # the balance, the net and the cash takings
    assert "-£1,234.56" in text and "£1,234.56" in text
    assert "£13,574.63" in text  # the day's total
    assert "14809.19" not in text and "1234.56" not in text.replace("£1,234.56", "")
