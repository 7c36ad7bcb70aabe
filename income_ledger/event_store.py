"""The event store's recorder: eventsourcing-sqlalchemy's, with a lean write on PostgreSQL.

eventsourcing-sqlalchemy inserts through ORM objects and takes `LOCK TABLE ... IN EXCLUSIVE
MODE` first, so that positions become visible in the order they were assigned (a reader never
skips an id that commits late). The lock is held until COMMIT, so whatever Python does while
holding it serialises every writer. Here everything is encoded into one SQL text *before* the
lock, and the lock, the NOTIFY and a multi-row INSERT go to the server in one round trip.

A large write (a batch of receipts, an import, an import's batch event) goes in with a binary
COPY instead: its positions are taken from the table's sequence under the same lock (in one
round trip with the lock and the NOTIFY), then the rows, positions included, are copied in a
second. The server stores copied rows in about a third of the time a multi-row INSERT of them
takes, and the client sends the bytes as they are instead of quoting them.

`write_group` writes the commands of several requests in one transaction (group commit, see
income_ledger/group_commit.py): a command whose events clash with stored ones (optimistic
concurrency) is left out by the same statement, so it never aborts its neighbours, and rows
of other tables (the stored idempotent response, payer details) join the transaction, taking
the command's last position where they need it.

On SQLite (one writer at a time holds the file anyway) the events go in as one `executemany`
of one prepared statement instead of one ORM object each; the positions are the ones SQLite
gave them, read back as the last rowid: rows inserted while this transaction holds the write
lock are numbered one after another.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import psycopg2
import sqlalchemy.exc
from eventsourcing.persistence import StoredEvent
from eventsourcing_sqlalchemy.factory import SQLAlchemyFactory
from eventsourcing_sqlalchemy.recorders import SQLAlchemyApplicationRecorder
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Row as ResultRow
from sqlalchemy.orm import Session

from application import event_store
from application.grouped_writes import Row, Write

FACTORY_TOPIC = "income_ledger.event_store:LedgerFactory"
EVENT_COLUMNS = "originator_id, originator_version, topic, state"
POSTGRES = postgresql.dialect()
# From this many events, or this many bytes of them, a write goes in by COPY: below both, the
# second round trip costs more than COPY saves. (An import's batch event, one line entry per
# line, is megabytes: quoted as hex into an INSERT it takes the server twice as long.)
COPY_FROM_EVENTS = 100
COPY_FROM_BYTES = 64 * 1024
# COPY's binary format: the header (signature, flags, no extension), then per row its field
# count and each field's length and bytes (id bigint, originator_id uuid, originator_version
# bigint, topic text, state bytea), then -1.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
COPY_ROW = struct.Struct("!hiqi16siqi")
COPY_TRAILER = struct.pack("!h", -1)
# The sequence of the events table's `id`: the one the column owns, else the one its default
# calls (pg_depend records the default's dependency on it).
ID_SEQUENCE = """
SELECT coalesce(
    pg_get_serial_sequence('{table}', 'id'),
    (SELECT s.oid::regclass::text
     FROM pg_attribute a
     JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
     JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
         AND d.refclassid = 'pg_class'::regclass
     JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
     WHERE a.attrelid = '{table}'::regclass AND a.attname = 'id')
)"""


class LedgerRecorder(SQLAlchemyApplicationRecorder):
    """eventsourcing-sqlalchemy's application recorder with the lean PostgreSQL insert."""

    _id_sequence_name: str | None = None

    def _insert_stored_events(
        self, session: Session, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int]:
        if not stored_events:
            return []
        if not self._is_postgres():
            return self._insert_into_sqlite(session, stored_events)
        if len(stored_events) >= COPY_FROM_EVENTS or _state_bytes(stored_events) >= COPY_FROM_BYTES:
            return self._copy_into_postgres(session, stored_events)
        cursor = _raw_cursor(session)
        values = b",".join(_event_values(cursor, event) for event in stored_events)
        statement = (
            self._lock_and_notify()
            + f"INSERT INTO {self._table()} ({EVENT_COLUMNS}) VALUES ".encode()
            + values
            + b" RETURNING id"
        )
        return [row[0] for row in _execute(session, statement)]

    def _copy_into_postgres(
        self, session: Session, stored_events: Sequence[StoredEvent]
    ) -> list[int]:
        """Take as many positions from the table's sequence under the lock (in order: the
        lock is held until COMMIT, so they become visible in that order; they need not be
        consecutive), then COPY the events with them."""
        table = self._table()
        sequence = self._id_sequence(session)
        taken = _execute(
            session,
            self._lock_and_notify()
            + (
                f"SELECT nextval('{sequence}'::regclass) "
                f"FROM generate_series(1, {len(stored_events):d})"
            ).encode(),
        )
        positions = sorted(row[0] for row in taken)
        data = _copy_data(positions, stored_events)
        connection = session.connection()
        cursor = connection.connection.cursor()
        statement = f"COPY {table} (id, {EVENT_COLUMNS}) FROM STDIN WITH (FORMAT binary)"
        try:
            cursor.copy_expert(statement, io.BytesIO(data), size=len(data))
        except psycopg2.Error as error:
            # As SQLAlchemy would have raised it (a clash is its IntegrityError), so that the
            # datastore turns it into eventsourcing's error as for every other statement.
            raise sqlalchemy.exc.DBAPIError.instance(
                statement, None, error, psycopg2.Error
            ) from error
        finally:
            cursor.close()
        return positions

    def _id_sequence(self, session: Session) -> str:
        """The sequence the `id` column's default takes positions from, looked up once.

        The one the column owns (serial, identity), else the one its default calls: a table
        whose sequence is not owned by it (OWNED BY NONE, a table made by hand) still numbers
        its small writes, and a large write must take its positions from the same sequence."""
        if self._id_sequence_name is None:
            ((name,),) = _execute(session, ID_SEQUENCE.format(table=self._table()).encode())
            if name is None:
                raise RuntimeError(f"{self._table()}.id takes its values from no sequence")
            self._id_sequence_name = str(name)
        return self._id_sequence_name

    def _insert_into_sqlite(
        self, session: Session, stored_events: Sequence[StoredEvent]
    ) -> list[int]:
        connection = session.connection()
        uuid_value = self._uuid_processor(connection.dialect)
        connection.exec_driver_sql(
            f"INSERT INTO {self._table()} ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?)",
            [
                (uuid_value(e.originator_id), e.originator_version, e.topic, e.state)
                for e in stored_events
            ],
        )
        last = connection.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
        return list(range(last - len(stored_events) + 1, last + 1))

    def _uuid_processor(self, dialect: Any) -> Callable[[Any], Any]:
        return event_store.originator_id_value(self, dialect)

    def write_group(self, session: Session, writes: Sequence[Write]) -> list[int | None]:
        """Write each command whose events clash with none stored, in one statement; the
        last position of each write, None for one left out (run it again alone)."""
        cursor = _raw_cursor(session)
        batch = b",".join(
            cursor.mogrify(
                "(%s,%s,%s::uuid,%s,%s,%s::bytea)",
                (ordinal, number, str(e.originator_id), e.originator_version, e.topic, e.state),
            )
            for ordinal, (number, e) in enumerate(
                (number, e) for number, write in enumerate(writes) for e in write.events
            )
        )
        table = self._table()
        statement = self._lock_and_notify() + (
            f"WITH batch(ordinal, write_no, {EVENT_COLUMNS}) AS (VALUES ".encode()
            + batch
            + (
                "), clash AS (SELECT b.write_no FROM batch b JOIN "
                f"{table} e USING (originator_id, originator_version)"
            ).encode()
            + _stale_decisions(cursor, table, writes)
            + (
                "), "
                f"ins AS (INSERT INTO {table} ({EVENT_COLUMNS}) "
                f"SELECT {EVENT_COLUMNS} FROM batch "
                "WHERE write_no NOT IN (SELECT write_no FROM clash) ORDER BY ordinal "
                "RETURNING id, originator_id, originator_version), "
                "pos AS (SELECT b.write_no, max(i.id) AS position FROM ins i "
                "JOIN batch b USING (originator_id, originator_version) GROUP BY b.write_no)"
            ).encode()
            + b"".join(
                _side_rows(cursor, number, table_rows)
                for number, table_rows in enumerate(_rows_by_table(writes))
            )
            + b" SELECT write_no, position FROM pos"
        )
        positions = {number: position for number, position in _execute(session, statement)}
        return [positions.get(number) for number in range(len(writes))]

    def _is_postgres(self) -> bool:
        assert self.datastore.engine is not None
        return bool(self.datastore.engine.dialect.name == "postgresql")

    def _table(self) -> str:
        name = self.events_table_name
        return f"{self.schema_name}.{name}" if self.schema_name else name

    def _lock_and_notify(self) -> bytes:
        # NOTIFY is delivered at COMMIT, so sending it first costs nothing and saves a trip.
        return (
            f"LOCK TABLE {self._table()} IN EXCLUSIVE MODE; NOTIFY {self.channel_name}; ".encode()
        )


class LedgerFactory(SQLAlchemyFactory):
    """eventsourcing-sqlalchemy's factory, building the ledger's recorder."""

    application_recorder_class = LedgerRecorder


def _raw_cursor(session: Session) -> Any:
    """The driver's cursor, only to quote values (mogrify runs in the client, no round trip)."""
    return session.connection().connection.cursor()


def _execute(session: Session, statement: bytes) -> Sequence[ResultRow[Any]]:
    """Run SQL whose values are already quoted: the driver must not look for parameters."""
    return (
        session.connection()
        .exec_driver_sql(statement.decode(), execution_options={"no_parameters": True})
        .all()
    )


def _stale_decisions(cursor: Any, table: str, writes: Sequence[Write]) -> bytes:
    """More of the `clash` CTE: the writes decided on an aggregate that has moved on since.

    Checked under the table lock, in the statement that inserts: no round trip of its own,
    and nothing can change the aggregate between the check and the commit."""
    decided = b",".join(
        cursor.mogrify("(%s,%s::uuid,%s)", (number, str(originator_id), version))
        for number, write in enumerate(writes)
        for originator_id, version in write.decided_on
    )
    if not decided:
        return b""
    return (
        b" UNION SELECT d.write_no FROM (VALUES "
        + decided
        + f") AS d(write_no, originator_id, originator_version) JOIN {table} e ON "
        "e.originator_id = d.originator_id AND e.originator_version > d.originator_version".encode()
    )


def _event_values(cursor: Any, event: StoredEvent) -> bytes:
    return bytes(
        cursor.mogrify(
            "(%s::uuid,%s,%s,%s::bytea)",
            (str(event.originator_id), event.originator_version, event.topic, event.state),
        )
    )


def _state_bytes(stored_events: Sequence[StoredEvent]) -> int:
    return sum(len(event.state) for event in stored_events)


def _copy_data(positions: Sequence[int], stored_events: Sequence[StoredEvent]) -> bytes:
    """The events as COPY's binary rows, each with its position."""
    topics: dict[str, bytes] = {}
    rows = [COPY_HEADER]
    for position, event in zip(positions, stored_events, strict=True):
        topic = topics.get(event.topic)
        if topic is None:
            topic = topics[event.topic] = event.topic.encode()
        originator_id = event.originator_id
        if not isinstance(originator_id, UUID):
            originator_id = UUID(str(originator_id))
        rows.append(
            COPY_ROW.pack(
                5, 8, position, 16, originator_id.bytes, 8, event.originator_version, len(topic)
            )
        )
        rows.append(topic)
        rows.append(len(event.state).to_bytes(4, "big"))
        rows.append(event.state)
    rows.append(COPY_TRAILER)
    return b"".join(rows)


def _rows_by_table(writes: Sequence[Write]) -> list[list[tuple[int, Row]]]:
    """The writes' other rows grouped by table and by which columns they fill."""
    groups: dict[tuple[str, tuple[str, ...], str | None], list[tuple[int, Row]]] = {}
    for number, write in enumerate(writes):
        for row in write.rows:
            key = (row.table.name, tuple(row.values), row.position_column)
            groups.setdefault(key, []).append((number, row))
    return list(groups.values())


def _side_rows(cursor: Any, cte_number: int, rows: list[tuple[int, Row]]) -> bytes:
    """A CTE inserting one table's rows for the writes that were inserted (those in `pos`)."""
    first = rows[0][1]
    columns = list(first.values)
    casts = ",".join(
        f"CAST(%s AS {first.table.c[name].type.compile(dialect=POSTGRES)})" for name in columns
    )
    values = b",".join(
        cursor.mogrify(f"(%s,{casts})", (number, *row.values.values())) for number, row in rows
    )
    names = ", ".join(columns)
    target = names + (f", {first.position_column}" if first.position_column else "")
    source = ", ".join(f"v.{name}" for name in columns) + (
        ", pos.position" if first.position_column else ""
    )
    return (
        f", side{cte_number} AS (INSERT INTO {first.table.name} ({target}) SELECT {source} "
        f"FROM (VALUES ".encode()
        + values
        + f") AS v(write_no, {names}) JOIN pos USING (write_no))".encode()
    )
