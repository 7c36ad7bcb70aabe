"""`income-ledger projections verify` compares the exceptions report's stored books
(books_snapshot) with a fold afresh of the events up to their position: every figure a
process reports from them is then traceable to the events (both backends)."""

from __future__ import annotations

import json
import zlib

import pytest
from sqlalchemy import create_engine, select, update

from application import reconciliation
from application.books_snapshot import DIGEST_SIZE, EXCEPTIONS_BOOKS, books_snapshot_table
from tests.conftest import cli_invoker


@pytest.fixture
def cli(database_url, monkeypatch):
    monkeypatch.setattr(reconciliation, "SNAPSHOT_EVERY_EVENTS", 1)  # stored at each report
    run = cli_invoker(monkeypatch, database_url, actor="officer:cli")
    run("db", "init")
    run("funds", "add", "--sample")
    return run


def verify(cli, code: int = 0) -> dict:
    return json.loads(cli("projections", "verify", "--json", code=code).stdout)


def test_stored_books_altered_by_hand_fail_verify_and_say_what_differs(cli, database_url) -> None:
    assert verify(cli)["stored_books"]["status"] == "none"
    paid = []
    for amount in ("12.34", "56.78"):
        recorded = cli(
            "payments", "record", "--channel", "cash", "--amount", amount,
            "--reference", "junk", "--json",
        )  # fmt: skip
        paid.append(json.loads(recorded.stdout)["payment"]["payment_id"])
    cli("reconcile", "exceptions", "--json")  # stores the books
    report = verify(cli)
    assert report["ok"] and report["stored_books"]["status"] == "matches"
    assert report["stored_books"]["position"] > 0
    assert "stored exceptions books match" in cli("projections", "verify").stdout

    engine = create_engine(database_url)
    table = books_snapshot_table
    try:
        with engine.begin() as connection:
            stored = bytes(
                connection.execute(
                    select(table.c.books).where(table.c.name == EXCEPTIONS_BOOKS)
                ).scalar_one()
            )
            digest, books = stored[:DIGEST_SIZE], stored[DIGEST_SIZE:]
            state = json.loads(zlib.decompress(books))
            (row,) = [r for r in state["receipts"] if r[0] == paid[0]]
            row[2] += 100  # a receipt's amount raised by a pound
            altered = zlib.compress(json.dumps(state).encode())
            connection.execute(
                update(table).where(table.c.name == EXCEPTIONS_BOOKS).values(books=digest + altered)
            )
    finally:
        engine.dispose()
    report = verify(cli, code=1)
    assert not report["ok"] and report["stored_books"]["status"] == "differs"
    (difference,) = report["stored_books"]["differences"]
    assert difference.startswith(f"receipts['{paid[0]}']") and "1334" in difference
    said = cli("projections", "verify", code=1)
    assert "DIFFER FROM a fold afresh" in said.output and paid[0] in said.output
