"""The auditor commands as an auditor runs them, on both backends: output and exit codes."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text

from application.ledger import RecordPayment
from income_ledger.bootstrap import build_projection, event_source
from projections.replay import replay_balances
from projections.runner import Projection
from projections.schema import LIVE
from tests.audit.conftest import execute, spread_workload
from tests.conftest import leave_a_gap, stored_events
from tests.domain.helpers import CT_REF, HRA_REF, SUN_REF

UK = ZoneInfo("Europe/London")


@pytest.fixture
def engine(ledger, settings):
    projection = build_projection(settings, ledger)
    yield projection.engine
    projection.engine.dispose()


def at(text_: str) -> datetime:
    return datetime.fromisoformat(text_)


def test_replay_prints_balances_as_table_csv_and_json(cli, ledger, officer) -> None:
    # 23:30 UTC on 31 March is 00:30 on 1 April in the UK: 1 April's money.
    for amount, reference, when in [
        (10_000, CT_REF, "2026-03-31T09:00:00+00:00"),
        (2_500, "JUNK", "2026-03-31T12:00:00+00:00"),
        (6_000, SUN_REF, "2026-03-31T23:30:00+00:00"),
    ]:
        ledger.record_payment(
            RecordPayment("cash", amount, reference, received_at=at(when)), officer
        )
    by_day = json.loads(cli("replay", "--as-at", "2026-03-31", "--format", "json").stdout)
    assert by_day["funds"] == {"CT": 10_000} and by_day["suspense_pence"] == 2_500
    assert by_day["as_at"] == "2026-03-31T22:59:59.999999+00:00"  # end of the UK day (BST)
    by_moment = json.loads(
        cli("replay", "--as-at", "2026-03-31T23:59:59Z", "--format", "json").stdout
    )
    assert by_moment["funds"] == {"CT": 10_000, "SUN": 6_000}
    assert by_moment["vat_pence_by_fund"]["SUN"] == 1_000
    one_fund = json.loads(
        cli("replay", "--as-at", "2026-04-01", "--fund", "sun", "--format", "json").stdout
    )
    assert one_fund["funds"] == {"SUN": 6_000} and one_fund["fund_code"] == "SUN"
    table = cli("replay", "--as-at", "2026-04-01").stdout
    assert "SUSPENSE" in table and "£25.00" in table and "£185.00" in table  # total held
    rows = list(
        csv.reader(cli("replay", "--as-at", "2026-04-01", "--format", "csv").stdout.splitlines())
    )
    assert rows[0] == ["fund_code", "balance_pence", "net_pence", "vat_pence"]
    assert ["SUN", "6000", "5000", "1000"] in rows and ["SUSPENSE", "2500", "2500", "0"] in rows
    known_before = json.loads(
        cli(
            "replay",
            "--as-at",
            "2026-04-01",
            "--known-at",
            "2020-01-01T00:00:00Z",
            "--format",
            "json",
        ).stdout
    )
    assert known_before["funds"] == {} and known_before["events_counted"] == 0


def test_replay_says_what_to_fix(cli) -> None:
    assert (
        "no fund with code 'XX'"
        in cli("replay", "--as-at", "2026-03-31", "--fund", "XX", code=2).output
    )
    assert "2026-03-31T10:00:00Z" in cli("replay", "--as-at", "yesterday", code=2).output
    assert "time zone" in cli("replay", "--as-at", "2026-03-31T10:00:00", code=2).output


def test_chain_verify_and_seals_with_their_exit_codes(
    cli, ledger, officer, engine, tmp_path
) -> None:
    for n in range(5):
        ledger.record_payment(RecordPayment("cash", 100 + n, CT_REF, external_id=f"c{n}"), officer)
    assert "nothing verified" in cli("audit", "verify", code=1).output
    events = ledger.max_position()  # the chart of funds, then two events per receipt
    assert f"chained {events} events" in cli("audit", "chain").stdout
    assert "chained 0 events" in cli("audit", "chain").stdout
    assert f"chain intact: {events} events" in cli("audit", "verify").stdout
    seals_file = tmp_path / "seals.jsonl"
    cli("audit", "seals", "--include-today", "--out", str(seals_file))
    (seal,) = [json.loads(line) for line in seals_file.read_text().splitlines()]
    assert seal["last_position"] == events and len(seal["link_sha256"]) == 64
    assert cli("audit", "seals").stdout == ""  # today's seal is still open
    assert "all match" in cli("audit", "verify", "--seals", str(seals_file)).stdout

    target = events - 3  # the Received event of the fourth receipt
    with engine.connect() as connection:
        state = connection.execute(
            text("SELECT state FROM ledger_events WHERE id = :id"), {"id": target}
        ).scalar_one()
    forged = bytes(state).replace(b"officer:test", b"officer:evil")
    assert forged != bytes(state)
    execute(engine, "UPDATE ledger_events SET state = :s WHERE id = :id", s=forged, id=target)
    tampered = cli("audit", "verify", "--seals", str(seals_file), code=1)
    assert f"first mismatch at position {target} (altered)" in tampered.output
    assert "published seal" in tampered.output
    report = json.loads(cli("audit", "verify", "--json", code=1).stdout)
    assert report["ok"] is False and report["first_mismatch"]["position"] == target

    seals_file.write_text("{not json\n")
    assert "line 1 of" in cli("audit", "verify", "--seals", str(seals_file), code=2).output
    missing = tmp_path / "nowhere.jsonl"
    assert (
        "cannot read the seals file"
        in cli("audit", "verify", "--seals", str(missing), code=2).output
    )


@pytest.mark.parametrize("forged_position", [-1, 0])
def test_a_row_forged_below_the_first_event_is_found(
    cli, ledger, officer, engine, tmp_path, forged_position
) -> None:
    pid = ledger.record_payment(RecordPayment("cash", 500, CT_REF), officer).payment_id
    ledger.note(pid, "payer phoned", officer)
    cli("audit", "chain")
    seals_file = tmp_path / "seals.jsonl"
    cli("audit", "seals", "--include-today", "--out", str(seals_file))
    # Someone with access to the table appends a copy of the note as the payment's next
    # version, at a position the chain never reaches: the application uses it...
    execute(
        engine,
        "INSERT INTO ledger_events (id, originator_id, originator_version, topic, state) "
        "SELECT :id, originator_id, originator_version + 1, topic, state FROM ledger_events "
        "WHERE id = (SELECT max(id) FROM ledger_events)",
        id=forged_position,
    )
    shown = json.loads(cli("payments", "show", str(pid), "--json").stdout)
    assert [entry["action"] for entry in shown["history"]][-2:] == ["Noted", "Noted"]
    # ...so verify must see it, with and without the published seals.
    for args in ([], ["--seals", str(seals_file)]):
        found = cli("audit", "verify", *args, code=1)
        assert f"first mismatch at position {forged_position} (unexpected)" in found.output
    report = json.loads(cli("audit", "verify", "--json", code=1).stdout)
    assert [(f["position"], f["kind"]) for f in report["findings"]] == [
        (forged_position, "unexpected")
    ]
    assert "unlinked" in cli("audit", "trace", str(pid)).stdout


def test_chain_commands_ask_for_db_upgrade_on_an_older_database(cli, engine) -> None:
    """A database from before the chain (and before schema versions) gets it on upgrade."""
    execute(engine, "DROP TABLE audit_chain")
    execute(engine, "DROP TABLE alembic_version")
    assert "income-ledger db upgrade" in cli("audit", "chain", code=2).output
    cli("db", "upgrade")
    cli("audit", "chain")


def test_trace_tells_the_whole_story_of_a_receipt(cli, ledger, officer) -> None:
    pid = ledger.record_payment(RecordPayment("cheque", 12_000, "JUNK"), officer).payment_id
    ledger.allocate(pid, [("CT", CT_REF, 5_000), ("SUN", SUN_REF, 6_000)], officer, "advice")
    ledger.transfer(pid, ("CT", CT_REF), ("HRA", HRA_REF), 2_000, officer, "wrong account")
    ledger.refund(pid, 500, officer, "overpaid")
    cli("audit", "chain")
    ledger.note(pid, "payer phoned", officer)
    trace = json.loads(cli("audit", "trace", str(pid), "--json").stdout)
    assert [e["action"] for e in trace["events"]] == [
        "Received",
        "Allocated",
        "Transferred",
        "Refunded",
        "Noted",
    ]
    assert [e["chain"] for e in trace["events"]] == ["ok", "ok", "ok", "ok", None]
    assert trace["events"][2]["reason"] == "wrong account"
    assert trace["received_at"].endswith("+00:00")  # JSON keeps ISO UTC; text shows UK times
    assert all(e["effective_at"].endswith("+00:00") for e in trace["events"])
    assert trace["events"][2]["actor"] == "officer:test"
    assert all(sum(p["amount_pence"] for p in e["postings"]) == 0 for e in trace["events"])
    positions = [e["position"] for e in trace["events"]]
    assert positions == sorted(positions)
    assert {
        (w["place"], w["fund_code"], w["amount_pence"], w["vat_pence"]) for w in trace["now"]
    } == {
        ("allocated", "CT", 3_000, 0),
        ("allocated", "HRA", 2_000, 0),
        ("allocated", "SUN", 6_000, 1_000),
        ("suspense", None, 500, 0),
        ("refunded", None, 500, 0),
    }
    assert trace["accounted_pence"] == 12_000
    text_ = cli("audit", "trace", str(pid)).stdout
    assert "every penny of the £120.00 received is accounted for" in text_
    assert "wrong account" in text_ and "not yet chained" in text_
    assert f"income:SUN:{SUN_REF}" in text_  # printed as it is, never as an emoji code
    assert (
        "no payment with id"
        in cli("audit", "trace", "00000000-0000-0000-0000-000000000000", code=2).output
    )
    assert "is not a payment id" in cli("audit", "trace", "12", code=2).output


def test_trial_balance_sums_to_zero(cli, ledger) -> None:
    spread_workload(ledger, seed=21, receipts=15)
    balance = json.loads(
        cli("audit", "trial-balance", "--as-at", "2026-04-15", "--format", "json").stdout
    )
    assert balance["balanced"] is True and balance["total_pence"] == 0
    assert balance["debits_pence"] == balance["credits_pence"] > 0
    assert sum(balance["accounts"].values()) == 0
    summary = json.loads(
        cli(
            "audit", "trial-balance", "--as-at", "2026-04-15", "--summary", "--format", "json"
        ).stdout
    )
    assert all(a.count(":") <= 1 for a in summary["accounts"])
    assert summary["debits_pence"] == balance["debits_pence"]
    table = cli("audit", "trial-balance", "--as-at", "2026-04-15", "--summary").stdout
    assert "the ledger balances" in table
    rows = list(
        csv.DictReader(
            cli(
                "audit", "trial-balance", "--as-at", "2026-04-15", "--format", "csv"
            ).stdout.splitlines()
        )
    )
    assert sum(int(r["debit_pence"]) - int(r["credit_pence"]) for r in rows) == 0


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_export_writes_what_the_read_model_says(cli, ledger, officer, engine, tmp_path) -> None:
    ids = spread_workload(ledger, seed=31, receipts=20)
    ledger.note(ids[0], '=HYPERLINK("http://example.invalid")', officer)
    Projection(engine, event_source(ledger), page_size=500).catch_up()
    out = tmp_path / "export"
    cli("audit", "export", "--from", "2026-01-01", "--to", "2026-12-31", "--out", str(out))
    trail = read_csv(out / "audit_trail.csv")
    postings = read_csv(out / "postings.csv")
    with engine.connect() as connection:
        live_trail = connection.execute(
            select(LIVE.audit_trail).order_by(LIVE.audit_trail.c.position)
        ).all()
        live_postings = connection.execute(select(LIVE.postings)).all()
    assert [int(r["position"]) for r in trail] == [row.position for row in live_trail]
    for exported, live in zip(trail, live_trail, strict=True):
        for column in (
            "event_id",
            "actor",
            "action",
            "payment_id",
            "fund_code",
            "reference",
            "correlation_id",
        ):
            assert exported[column] == (getattr(live, column) or ""), column
        assert exported["amount_pence"] == (
            "" if live.amount_pence is None else str(live.amount_pence)
        )
        assert datetime.fromisoformat(exported["effective_at"]) == live.effective_at
        assert datetime.fromisoformat(exported["recorded_at"]) == live.recorded_at
        if live.reason and live.reason.startswith("="):
            assert exported["reason"] == "'" + live.reason  # shown by a spreadsheet, never run
        else:
            assert exported["reason"] == (live.reason or "")
    key = ("event_id", "account", "amount_pence", "channel", "effective_date")
    assert Counter(tuple(r[k] for k in key) for r in postings) == Counter(
        (p.event_id, p.account, str(p.amount_pence), p.channel or "", p.effective_date.isoformat())
        for p in live_postings
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["postings_total_pence"] == 0 and manifest["audit_rows"] == len(trail)
    assert (
        manifest["files_sha256"]["postings.csv"]
        == hashlib.sha256((out / "postings.csv").read_bytes()).hexdigest()
    )
    assert (
        "--overwrite"
        in cli(
            "audit",
            "export",
            "--from",
            "2026-01-01",
            "--to",
            "2026-12-31",
            "--out",
            str(out),
            code=2,
        ).output
    )
    assert (
        "swap them"
        in cli(
            "audit",
            "export",
            "--from",
            "2026-04-02",
            "--to",
            "2026-04-01",
            "--out",
            str(out),
            code=2,
        ).output
    )


def test_an_export_that_fails_part_way_leaves_the_output_as_it_was(
    cli, ledger, officer, engine, tmp_path
) -> None:
    for n in range(6):
        ledger.record_payment(RecordPayment("cash", 100 + n, CT_REF, external_id=f"x{n}"), officer)
    today = datetime.now(UK).date()
    period = ("--from", str(today - timedelta(days=1)), "--to", str(today))
    out = tmp_path / "export"
    cli("audit", "export", *period, "--out", str(out))
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    # The last event can no longer be read: the export stops after writing the others.
    execute(
        engine,
        "UPDATE ledger_events SET state = :s WHERE id = :id",
        s=b"not an event",
        id=ledger.max_position(),
    )
    failed = cli("audit", "export", *period, "--out", str(out), "--overwrite", code=1)
    assert "cannot be read" in failed.output
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    fresh = tmp_path / "fresh"
    cli("audit", "export", *period, "--out", str(fresh), code=1)
    assert list(fresh.iterdir()) == []


def test_a_period_export_takes_the_opening_balance_to_the_closing_one(
    cli, ledger, tmp_path
) -> None:
    spread_workload(ledger, seed=41, receipts=25)
    out = tmp_path / "march"
    cli("audit", "export", "--from", "2026-03-15", "--to", "2026-04-10", "--out", str(out))
    postings = read_csv(out / "postings.csv")
    assert postings and all("2026-03-15" <= p["effective_date"] <= "2026-04-10" for p in postings)
    events = list(ledger.read_events())
    # UK dates: 15 March is still GMT, 10 April is in summer time (UTC+1).
    opening = replay_balances(events, as_at=at("2026-03-14T23:59:59.999999+00:00"))
    closing = replay_balances(events, as_at=at("2026-04-10T22:59:59.999999+00:00"))
    movement: dict[str, int] = defaultdict(int)
    for p in postings:
        if p["fund_code"]:
            movement[p["fund_code"]] -= int(p["amount_pence"])
    for code in set(opening.funds) | set(closing.funds) | set(movement):
        assert opening.funds.get(code, 0) + movement[code] == closing.funds.get(code, 0), code
    recorded = tmp_path / "recorded"
    today = datetime.now(UTC).date().isoformat()
    cli(
        "audit",
        "export",
        "--from",
        today,
        "--to",
        today,
        "--by",
        "recorded",
        "--out",
        str(recorded),
    )
    assert len(read_csv(recorded / "audit_trail.csv")) == len(events)  # all keyed today


def test_seals_of_closed_days_only_once_the_chain_has_passed_them(
    cli, ledger, officer, engine
) -> None:
    ledger.record_payment(RecordPayment("cash", 100, CT_REF, external_id="d1"), officer)
    cli("audit", "chain")
    yesterday = (datetime.now(UK) - timedelta(days=1)).date()
    execute(engine, "UPDATE audit_seals SET business_date = :d", d=yesterday)
    ledger.record_payment(RecordPayment("cash", 200, CT_REF, external_id="d2"), officer)
    behind = cli("audit", "seals")
    assert behind.stdout == "" and "may be incomplete" in behind.output
    assert cli("audit", "seals", "--include-today").stdout == ""  # nothing chained today yet
    cli("audit", "chain")  # the chain moves on into today: yesterday's seal is final
    (closed,) = [json.loads(line) for line in cli("audit", "seals").stdout.splitlines()]
    assert closed["business_date"] == yesterday.isoformat()
    assert len(cli("audit", "seals", "--include-today").stdout.splitlines()) == 2
    assert (
        "cannot write" in cli("audit", "seals", "--out", "/nonexistent/dir/s.jsonl", code=2).output
    )


def test_seals_say_how_many_events_the_chain_is_behind_counted_not_positions(
    cli, ledger, officer, engine, settings
) -> None:
    """PostgreSQL's positions skip numbers for good (a write refused by a clash keeps the
    ones it took): the warning counts the events not chained, not the positions."""
    ledger.record_payment(RecordPayment("cash", 100, CT_REF, external_id="g1"), officer)
    cli("audit", "chain")
    chained_to = ledger.max_position()
    yesterday = (datetime.now(UK) - timedelta(days=1)).date()
    execute(engine, "UPDATE audit_seals SET business_date = :d", d=yesterday)
    leave_a_gap(ledger)
    ledger.record_payment(RecordPayment("cash", 200, CT_REF, external_id="g2"), officer)
    waiting = stored_events(ledger, after=chained_to)
    assert waiting == 2  # the receipt and its allocation
    if settings.is_postgres:
        assert ledger.max_position() - chained_to > waiting  # the gap this test is about
    said = " ".join(cli("audit", "seals").output.split())
    assert f"the chain is {waiting} events behind the event store" in said, said
