"""`income-ledger demo` is all or nothing where it can be, and resumable where it cannot.

Failures are real: a bad value in the generated data, refused by the ledger's own rules, and
a database that refuses an insert part-way (a trigger raising, as a full disk would).
"""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import create_engine, text

from income_ledger import demo
from tests.conftest import cli_invoker

DAYS, PER_DAY, SEED = "2", "60", "2"
DEMO = ("demo", "--days", DAYS, "--receipts-per-day", PER_DAY, "--seed", SEED)
BATCH = 25


@pytest.fixture
def run(database_url, monkeypatch):
    monkeypatch.setattr(demo, "BATCH_SIZE", BATCH)  # several batches from a small demo
    return cli_invoker(monkeypatch, database_url)


@pytest.fixture
def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def scalar(engine, sql: str) -> int:
    with engine.connect() as connection:
        return connection.execute(text(sql)).scalar_one()


def status(run) -> dict:
    return json.loads(run("projections", "status", "--json").stdout)


def test_bad_generated_data_stores_nothing(run, engine, monkeypatch) -> None:
    # One channel in about a hundred is one the ledger does not know; the first such receipt
    # comes after several good batches.
    monkeypatch.setitem(demo.CHANNEL_WEIGHTS, "carrier_pigeon", 2)
    failed = run(*DEMO, code=2)
    assert "nothing was stored" in failed.output and "carrier_pigeon" in failed.output
    assert "[unknown_channel]" in failed.output  # the code for scripts, not eaten as markup
    assert scalar(engine, "SELECT count(*) FROM ledger_events") == 0
    assert scalar(engine, "SELECT count(*) FROM payer_details") == 0


FAIL_INSERTS = {
    "sqlite": [
        "CREATE TRIGGER disk_full BEFORE INSERT ON ledger_events "
        "WHEN instr(NEW.topic, '{topic}') > 0 AND "
        "(SELECT count(*) FROM ledger_events WHERE instr(topic, '{topic}') > 0) >= {after} "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF strpos(NEW.topic, TG_ARGV[0]) > 0 AND "
        "(SELECT count(*) FROM ledger_events WHERE strpos(topic, TG_ARGV[0]) > 0) "
        ">= TG_ARGV[1]::int "
        "THEN RAISE EXCEPTION 'disk full' USING ERRCODE = 'disk_full'; END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER disk_full BEFORE INSERT ON ledger_events FOR EACH ROW "
        "EXECUTE FUNCTION disk_full('{topic}', '{after}')",
    ],
}


def refuse_inserts(engine, topic: str, after: int) -> None:
    """From now on the database refuses to store more than `after` events of `topic`."""
    with engine.begin() as connection:
        for statement in FAIL_INSERTS[engine.dialect.name]:
            # Literals, not parameters: neither database takes parameters in a trigger.
            connection.exec_driver_sql(statement.format(topic=topic, after=after))


def allow_inserts(engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "DROP TRIGGER disk_full"
                + (" ON ledger_events" if engine.dialect.name == "postgresql" else "")
            )
        )


@pytest.mark.parametrize(
    ("topic", "after", "receipts_stored"),
    [
        ("Payment.Received", 60, 50),  # the third batch of receipts fails: two are stored
        ("Payment.Refunded", 1, 120),  # all receipts stored, the second refund fails
    ],
)
def test_a_database_failure_part_way_says_what_is_stored_and_a_rerun_completes_it(
    run, engine, tmp_path, monkeypatch, topic, after, receipts_stored
) -> None:
    run("db", "init")
    refuse_inserts(engine, topic, after)
    failed = run(*DEMO, code=2 if engine.dialect.name == "sqlite" else 70)
    message = " ".join(failed.output.split())
    assert "the demo stopped part-way" in message and "disk full" in message.lower()
    assert f"{receipts_stored} of 120 receipts are stored" in message
    assert "the 7 missing sample funds were added" in message
    done, planned = map(int, re.search(r"(\d+) of (\d+) follow-up commands", message).groups())
    assert done < planned
    assert " ".join(DEMO) in message and "run the same command again" in message
    # Exactly what the message says is stored, in whole batches, and the read model shows it.
    assert scalar(engine, "SELECT count(*) FROM ledger_events WHERE topic LIKE '%Received'") == (
        receipts_stored
    )
    stored = status(run)
    assert stored["lag_events"] == 0 and stored["read_model_position"] > 0

    allow_inserts(engine)
    resumed = json.loads(run(*DEMO, "--json").stdout)
    monkeypatch.setenv("LEDGER_DATABASE_URL", f"sqlite:///{tmp_path / 'clean.db'}")
    clean = json.loads(run(*DEMO, "--json").stdout)
    assert resumed["summary"] == clean["summary"]
    assert resumed["demo"] == clean["demo"]
    assert resumed["read_model"]["fund_balances_pence"] == clean["summary"]["fund_balances_pence"]
