"""Wires settings, persistence and the application together. Nothing else builds them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import sessionmaker

from application.ledger import IncomeLedger
from income_ledger.decoding import TRANSCODER_TOPIC, event_decoder
from income_ledger.event_store import FACTORY_TOPIC
from income_ledger.group_commit import GroupCommitter
from income_ledger.schema_versions import (
    DatabaseNotInitialised,
    schema_version,
    upgrade_database,
)
from income_ledger.settings import Settings
from projections.chain import AuditChain, has_chain_tables
from projections.event_reader import EventReader, StoreAddress, StoredEvent
from projections.replay import ReplayResult, join_replays, replay_balances
from projections.runner import EventSource, Projection, projection_engine
from projections.segments import process_count, run_in_processes, split
from runtime.database_errors import Delay, causes, delay_of

PROGRESS_EVERY = 1000  # events between progress-bar updates: cheap on a million events


def eventsourcing_env(settings: Settings) -> dict[str, str]:
    """eventsourcing's settings; it never creates tables: the migrations own them."""
    return {
        "PERSISTENCE_MODULE": FACTORY_TOPIC,
        "TRANSCODER_TOPIC": TRANSCODER_TOPIC,
        "SQLALCHEMY_URL": settings.database_url,
        "CREATE_TABLE": "n",
        "AGGREGATE_CACHE_MAXSIZE": str(settings.aggregate_cache_size),
        "AGGREGATE_CACHE_FASTFORWARD": "y",
    }


def refuse_missing_sqlite_file(settings: Settings) -> None:
    """A SQLite file that does not exist is refused before connecting: connecting would
    leave an empty ledger.db behind in whatever directory the command was run from."""
    url = make_url(settings.database_url)
    path = url.database or ""
    if not url.drivername.startswith("sqlite") or path in ("", ":memory:"):
        return
    if path.startswith("file:") or url.query.get("mode") == "memory":
        return
    if not os.path.exists(path):
        raise DatabaseNotInitialised(
            f"the database at {safe_url(settings)}: there is no file {os.path.abspath(path)} "
            "(run the command where the ledger is, set LEDGER_DATABASE_URL, or create it "
            "with `income-ledger db init`)"
        )


def build_ledger(settings: Settings, *, check_schema: bool = True) -> IncomeLedger:
    """The ledger on the configured database; tables must exist (see init_database)."""
    if check_schema:
        refuse_missing_sqlite_file(settings)
        version = schema_version(settings.database_url)
        if not version.up_to_date:
            raise DatabaseNotInitialised(
                f"the database at {safe_url(settings)}: {version.describe()}"
            )
    ledger = IncomeLedger(
        env=eventsourcing_env(settings),
        refund_approval_limit_pence=settings.refund_approval_limit_pence,
        payout_narratives=settings.payout_narratives.split(","),
        collector_narratives=settings.collector_narratives.split(","),
        import_processes=settings.import_processes,
    )
    if settings.is_postgres:
        _check_connections_before_use(ledger)
        ledger.group_writer = GroupCommitter(ledger.recorder)  # type: ignore[arg-type]
    else:
        # eventsourcing-sqlalchemy switches a SQLite file to WAL on its first transaction;
        # done lazily, that can come while our projection holds the write lock ("database is
        # locked" on a fresh file), so do it now.
        ledger.recorder.datastore.init_sqlite_wal_mode()  # type: ignore[attr-defined]
    return ledger


def _check_connections_before_use(ledger: IncomeLedger) -> None:
    """Survive a restarted database: test pooled connections before handing them out.

    eventsourcing-sqlalchemy builds its engine from the URL alone; rebuild it with
    pool_pre_ping so that a connection the server dropped is replaced, not used.
    """
    datastore = ledger.recorder.datastore  # type: ignore[attr-defined]
    url = datastore.engine.url
    datastore.engine.dispose()
    datastore.engine = create_engine(url, pool_pre_ping=True)
    datastore.session_maker = sessionmaker(bind=datastore.engine)


def init_database(settings: Settings) -> tuple[str | None, str]:
    """Bring the database to this release's schema: create it from nothing, adopt one made by
    release 0.1.0, or apply the revisions it lacks (serialised, so processes starting
    together do not race). Returns its revision before and after."""
    return upgrade_database(settings.database_url)


def is_initialised(settings: Settings) -> bool:
    """True when the database is at the schema revision this release needs."""
    return schema_version(settings.database_url).up_to_date


def connection_problem(settings: Settings, error: BaseException) -> str | None:
    """What to do about a database that cannot be reached, or None if that is not the error."""
    text_ = " ".join(str(e) for e in causes(error))
    url = make_url(settings.database_url)
    where = safe_url(settings)
    delay = delay_of(error)
    if delay is Delay.CANCELLED:
        return (
            f"the database ({where}) cancelled the command: it ran longer than the database "
            "allows (its statement_timeout), or an administrator cancelled it. Try again, or "
            "ask for less (a shorter date range, a smaller file)"
        )
    if delay is Delay.CONFLICT:
        return (
            f"the database ({where}) rolled the command back to settle a clash with another "
            "process changing the same records at the same moment (a deadlock or a "
            "serialization failure); nothing was saved. Run the same command again: it will "
            "very likely succeed"
        )
    if delay is Delay.BUSY:
        return (
            f"the database ({where}) stayed locked by another process (a running import, "
            "`serve`, `project` or backup) for longer than this command waits. Try again shortly"
        )
    if url.get_backend_name() == "sqlite":
        if "unable to open database file" in text_:
            folder = Path(url.database or ".").parent
            return (
                f"cannot open the SQLite database {url.database}: does the folder {folder} "
                "exist, and may this user write there?"
            )
        return None
    host, port = url.host or "localhost", url.port or 5432
    if "does not exist" in text_ and "database" in text_:
        user = f" -U {url.username}" if url.username else ""
        return (
            f"the PostgreSQL database {url.database!r} does not exist on {host}:{port}: create "
            f"it with `createdb -h {host} -p {port}{user} {url.database}`, then run "
            "`income-ledger db init`"
        )
    if "password authentication failed" in text_ or ("role" in text_ and "does not exist" in text_):
        return (
            f"PostgreSQL at {host}:{port} refused the user in {where}: check the user and password"
        )
    refused = ("Connection refused", "could not connect", "No such file or directory", "timeout")
    if any(phrase in text_ for phrase in refused):
        return (
            f"cannot reach PostgreSQL at {host}:{port} ({where}): is the server running? Start "
            "it (for example `sudo systemctl start postgresql`, or `pg_ctlcluster 15 main "
            "start`), or fix LEDGER_DATABASE_URL"
        )
    if "server closed the connection" in text_ or "terminating connection" in text_:
        return f"PostgreSQL at {host}:{port} closed the connection: is it restarting? Try again"
    return None


def safe_url(settings: Settings) -> str:
    """The database URL without its password, for messages."""
    return make_url(settings.database_url).render_as_string(hide_password=True)


def event_reader(ledger: IncomeLedger) -> EventReader:
    """The event store read with the bare driver and decoded as the ledger's own mapper
    decodes (income_ledger.decoding)."""
    recorder: Any = ledger.recorder
    table = recorder.events_record_cls.__table__.name
    return EventReader(recorder.datastore.engine, table, event_decoder(ledger.mapper))


def store_address(ledger: IncomeLedger) -> StoreAddress:
    """Where worker processes find this ledger's event store (verify_chain's `store`)."""
    return StoreAddress.of(event_reader(ledger))


def event_source(ledger: IncomeLedger) -> EventSource:
    """The projections' view of the event store: pages of (position, domain event)."""
    return event_reader(ledger).events


def read_events(
    ledger: IncomeLedger, after: int = 0, page_size: int = 1000
) -> Iterator[tuple[int, Any]]:
    """Every domain event in recording order with its position (replay, audit export)."""
    return event_reader(ledger).all_events(after, page_size)


def replay(
    settings: Settings,
    ledger: IncomeLedger,
    *,
    as_at: datetime,
    known_at: datetime | None = None,
    fund_code: str | None = None,
    page_size: int = 1000,
    processes: int | None = 1,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """`replay_balances` over the whole event store, its position range split across up to
    `processes` worker processes (None: one per core; see projections.segments), each
    reading its own range: the result is the one a single reader gives."""
    last = ledger.max_position()
    ranges = split(last, process_count(last, processes))
    times = (as_at, known_at, fund_code)
    if len(ranges) == 1:
        events = event_reader(ledger).all_events(0, page_size)
        if progress is not None:
            events = advancing(events, progress)
        return replay_balances(events, as_at=as_at, known_at=known_at, fund_code=fund_code)
    result = join_replays(
        run_in_processes(
            _replay_range,
            [(settings.database_url, after, stop, page_size, *times) for after, stop in ranges],
        )
    )
    if progress is not None:
        progress(result.last_position)
    return result


def advancing(
    events: Iterable[tuple[int, Any]], advance: Callable[[int], None]
) -> Iterator[tuple[int, Any]]:
    """Pass events through, moving a progress bar by positions every PROGRESS_EVERY events."""
    reported = 0
    for count, (position, event) in enumerate(events, start=1):
        if count % PROGRESS_EVERY == 0:
            advance(position - reported)
            reported = position
        yield position, event


def _replay_range(
    url: str,
    after: int,
    stop: int | None,
    page_size: int,
    as_at: datetime,
    known_at: datetime | None,
    fund_code: str | None,
) -> ReplayResult:
    """One worker's part of `replay`: its own ledger, connection and range of positions."""
    ledger = build_ledger(Settings(database_url=url), check_schema=False)
    try:
        events = event_reader(ledger).all_events(after, page_size, stop)
        return replay_balances(events, as_at=as_at, known_at=known_at, fund_code=fund_code)
    finally:
        ledger.close()


def build_projection(
    settings: Settings, ledger: IncomeLedger, *, page_size: int = 1000
) -> Projection:
    reader = event_reader(ledger)
    engine = projection_engine(settings.database_url)
    return Projection(
        engine,
        reader.events,
        page_size=page_size,
        page_source=reader.events_on if same_database(engine, reader.engine) else None,
    )


def same_database(one: Engine, other: Engine) -> bool:
    """Whether a connection of `one` reads what `other` stores: the same URL, and not a
    SQLite database in memory (each engine has its own)."""
    url = one.url.render_as_string(hide_password=False)
    return url == other.url.render_as_string(hide_password=False) and one.url.database not in (
        None,
        "",
        ":memory:",
    )


# ---- the auditor's view of the event store (issue #5) -------------------------------------


def stored_event_source(ledger: IncomeLedger) -> Callable[[int | None, int], list[StoredEvent]]:
    """Pages of event rows exactly as stored (no decoding), for the tamper-evidence chain;
    `after=None` starts at the lowest id in the table, even one at 0 or below. Originator
    ids are text, as the chain hashes them."""
    return event_reader(ledger).text_rows


def stored_events_of(ledger: IncomeLedger, originator_id: UUID) -> list[Notification]:
    """One aggregate's event rows as stored, with their positions, in version order."""
    recorder: Any = ledger.recorder
    record = recorder.events_record_cls
    with recorder.transaction(commit=False) as session:
        rows = (
            session.query(record)
            .filter(record.originator_id == originator_id)
            .order_by(record.originator_version)
            .all()
        )
        return [
            Notification(
                id=row.id,
                originator_id=row.originator_id,
                originator_version=row.originator_version,
                topic=row.topic,
                state=bytes(row.state) if isinstance(row.state, memoryview) else row.state,
            )
            for row in rows
        ]


def build_audit_chain(
    settings: Settings, ledger: IncomeLedger, *, page_size: int = 1000
) -> AuditChain:
    """The tamper-evidence chain over this ledger's events (tables from `db init`)."""
    engine = projection_engine(settings.database_url)
    if not has_chain_tables(engine):
        engine.dispose()
        raise DatabaseNotInitialised(
            f"the database at {safe_url(settings)} has no audit chain tables yet: run "
            "`income-ledger db upgrade`"
        )
    reader = event_reader(ledger)
    return AuditChain(
        engine,
        reader.text_rows,
        ledger.mapper.to_domain_event,
        page_size=page_size,
        page_source=reader.text_rows_on if same_database(engine, reader.engine) else None,
    )
