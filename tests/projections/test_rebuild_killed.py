"""`projections rebuild` killed with SIGKILL part way through its build and inside its swap
transaction, on both backends: the live read model is the one before, whole, and the next
rebuild builds and swaps in every table. And the connections that write the live tables
and the events after a rebuild commit with the database's usual durability."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import event, text

from application.ledger import CommandContext, RecordPayment
from income_ledger.bootstrap import event_source
from projections import maintenance
from projections.maintenance import compare_models, rebuild, verify
from projections.schema import LIVE, new_index_tag, read_model
from tests.domain.helpers import CT_REF
from tests.projections.conftest import random_workload

SQLITE_FULL = 2

# A rebuild in a process of its own that stops, saying so in the marker file, at `point`:
# "build" after the build's first pages, "swap" with the live tables swapped and the
# position set, before the swap commits. It waits there to be killed.
_STOPPING_REBUILD = """
import sys, time
from pathlib import Path
from income_ledger.bootstrap import build_ledger, build_projection, event_source
from income_ledger.settings import Settings
from projections import maintenance

point, marker = sys.argv[1], Path(sys.argv[2])
def stop(*_args):
    marker.write_text(point)
    time.sleep(600)
pages = []
def progress(*_args):
    pages.append(1)
    if point == "build" and len(pages) == 3:
        stop()
if point == "swap":
    set_position = maintenance._set_position
    def set_then_stop(connection, name, position):
        set_position(connection, name, position)
        if name == maintenance.PROJECTION_NAME:
            stop()
    maintenance._set_position = set_then_stop
settings = Settings()
ledger = build_ledger(settings)
projection = build_projection(settings, ledger)
maintenance.rebuild(projection.engine, event_source(ledger), page_size=10, progress=progress)
"""


def _killed_at(point: str, database_url: str, tmp_path: Path) -> None:
    marker = tmp_path / f"stopped-{point}"
    process = subprocess.Popen(
        [sys.executable, "-c", _STOPPING_REBUILD, point, str(marker)],
        env=os.environ | {"LEDGER_DATABASE_URL": database_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, f"the rebuild did not reach its {point}"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)


def _copy_of_live(projection):
    tag = new_index_tag()
    model = read_model(f"_before{tag}", tag)
    model.metadata.create_all(projection.engine)
    with projection.engine.begin() as connection:
        for copy, live in zip(model.tables, LIVE.tables, strict=True):
            connection.execute(copy.insert().from_select(list(live.c.keys()), live.select()))
    return model


def test_a_rebuild_killed_mid_build_or_mid_swap_leaves_the_live_tables_whole(
    ledger, projection, settings, tmp_path
) -> None:
    random_workload(ledger, seed=31, receipts=30)
    projection.catch_up()
    before = _copy_of_live(projection)
    try:
        for point in ("build", "swap"):
            _killed_at(point, settings.database_url, tmp_path)
            assert compare_models(projection.engine, before, LIVE) == [], point
            assert projection.position() == ledger.max_position()
            report = verify(projection.engine, event_source(ledger))
            assert report.ok, (point, report.differences)
        assert rebuild(projection.engine, event_source(ledger)) == ledger.max_position()
        assert compare_models(projection.engine, before, LIVE) == []
        ledger.record_payment(
            RecordPayment("cash", 4_321, CT_REF, external_id="after-kills"),
            CommandContext("officer:test"),
        )
        projection.catch_up()
        report = verify(projection.engine, event_source(ledger))
        assert report.ok, report.differences
    finally:
        before.metadata.drop_all(projection.engine)


def test_the_swap_and_the_writes_after_a_rebuild_commit_with_full_durability(
    ledger, projection, monkeypatch
) -> None:
    """The synchronous setting (SQLite) on the very connections that commit the swap, the
    live projector's next page and the next event, read as each commits."""
    random_workload(ledger, seed=32, receipts=10)
    projection.catch_up()
    engine = projection.engine
    if engine.dialect.name != "sqlite":
        assert rebuild(engine, event_source(ledger)) == ledger.max_position()
        return
    events_engine = ledger.recorder.datastore.engine
    seen: dict[str, list[int]] = {"swap": [], "build": [], "projection": [], "events": []}
    swap, create_indexes = maintenance._swap, maintenance._create_indexes

    def watched_swap(connection, scratch, live) -> None:
        seen["swap"].append(_synchronous(connection.connection.driver_connection))
        swap(connection, scratch, live)

    def watched_indexes(connection, model, tables=None, **kwargs) -> None:
        seen["build"].append(_synchronous(connection.connection.driver_connection))
        create_indexes(connection, model, tables, **kwargs)

    monkeypatch.setattr(maintenance, "_swap", watched_swap)
    monkeypatch.setattr(maintenance, "_create_indexes", watched_indexes)
    assert rebuild(engine, event_source(ledger)) == ledger.max_position()
    # NORMAL while the scratch tables were built (indexed in two steps on SQLite).
    assert seen["build"] and set(seen["build"]) == {1}
    assert seen["swap"] == [SQLITE_FULL]

    def on_commit(label: str):
        def note(connection) -> None:
            seen[label].append(_synchronous(connection.connection.driver_connection))

        return note

    listeners = [(engine, on_commit("projection")), (events_engine, on_commit("events"))]
    for target, listener in listeners:
        event.listen(target, "commit", listener)
    try:
        ledger.record_payment(
            RecordPayment("cash", 1_234, CT_REF, external_id="after-rebuild"),
            CommandContext("officer:test"),
        )
        assert projection.process_page() > 0
    finally:
        for target, listener in listeners:
            event.remove(target, "commit", listener)
    assert seen["events"] and set(seen["events"]) == {SQLITE_FULL}, seen
    assert seen["projection"] and set(seen["projection"]) == {SQLITE_FULL}, seen
    with engine.connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM payments")).scalar()


def _synchronous(driver) -> int:
    return driver.execute("PRAGMA synchronous").fetchone()[0]
