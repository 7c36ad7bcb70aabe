"""The dashboard's takings show the day's cash-up over/short beside the net taken, and the
counted total the GL export has (found in the day-close walkthrough)."""

from __future__ import annotations

from datetime import date

from web.app import templates


def rendered(takings: dict) -> str:
    return templates.get_template("dashboard.html").render(
        takings=takings,
        ageing=[],
        takings_chart=list(takings["by_channel"].items()),
        funds_chart=[],
        ageing_chart=[],
        prefix="/web",
    )


def test_the_over_short_and_the_counted_total_beside_the_takings() -> None:
    takings = {
        "business_date": date(2026, 11, 30),
        "rows": [],
        "by_channel": {"cash": 44_932},
        "total_net_pence": 44_932,
        "over_short_by_channel": {"cash": -50},
        "total_over_short_pence": -50,
        "counted_by_channel": {"cash": 44_882},
        "total_counted_pence": 44_882,
    }
    page = rendered(takings)
    assert "approved cash-ups: over (+) and short (-)" in page
    assert "-£0.50" in page and "£448.82" in page and "£449.32" in page
    assert "over (+)" not in rendered(
        takings | {"over_short_by_channel": {}, "counted_by_channel": {"cash": 44_932}}
    )
