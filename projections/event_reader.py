"""Reads the event store's rows with the bare driver, for the paths that read every event.

Replay, `audit verify` and the projections read the whole log in position order.
eventsourcing-sqlalchemy's `select_notifications` builds an ORM object per row, which cost
about 20 times a raw SELECT (issue #9, docs/performance.md). This reads the same columns of
the same table, in the same keyset order, through the DBAPI connection under the event
store's own engine (psycopg2 / sqlite3), and decodes each row with the application's own
mapper: the domain events are exactly the ones the library would make
(tests/projections/test_event_reader.py holds the two readers equal for every event kind).

Rows become visible in position order on PostgreSQL because every writer holds the event
table's lock until it commits; reading with another cursor changes nothing about that. A
projection's page reads on its own connection, in its own transaction (`events_on`,
`text_rows_on`): the same SELECT, without a second pooled connection's pre-ping, BEGIN and
ROLLBACK (four round trips of a one-receipt page, docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from uuid import UUID

from sqlalchemy.engine import Connection, Engine


class StoredEvent(NamedTuple):
    """An event row as stored: what the mapper decodes and what the audit chain hashes."""

    id: int
    originator_id: UUID | str  # str in `text_rows`: the canonical form the chain hashes
    originator_version: int
    topic: str
    state: bytes | str  # str only where a hand edit left text (the chain reports it)


@dataclass(frozen=True)
class StoreAddress:
    """Where a worker process finds the event store, to open its own connection."""

    url: str = field(repr=False)  # may hold a password
    table: str

    @classmethod
    def of(cls, reader: EventReader) -> StoreAddress:
        return cls(reader.engine.url.render_as_string(hide_password=False), reader.table)


def _undecodable(row: StoredEvent) -> Any:
    raise TypeError("this reader was made to read stored rows only, without a mapper")


class EventReader:
    """Pages of stored rows, or of (position, domain event) pairs, after a position."""

    def __init__(
        self,
        engine: Engine,
        table: str,
        to_domain_event: Callable[[StoredEvent], Any] = _undecodable,
    ) -> None:
        self.engine = engine
        self.table = table
        self.to_domain_event = to_domain_event
        mark = placeholder(engine)
        quoted = engine.dialect.identifier_preparer.quote(table)
        sqlite = engine.dialect.name == "sqlite"
        # SQLite keeps a UUID as 16 bytes. PostgreSQL sends it as text: psycopg2's UUID
        # typecaster (which SQLAlchemy registers) cost a third of `audit verify`, which
        # hashes the text anyway.
        originator = "originator_id" if sqlite else "CAST(originator_id AS TEXT)"
        columns = f"id, {originator}, originator_version, topic, state"
        self._after = f"SELECT {columns} FROM {quoted} WHERE id > {mark} ORDER BY id LIMIT {mark}"
        self._first = f"SELECT {columns} FROM {quoted} ORDER BY id LIMIT {mark}"
        self._uuid: Callable[[Any], UUID] = _uuid_from_bytes if sqlite else UUID
        self._text: Callable[[Any], str] | None = _text_from_bytes if sqlite else None

    def rows(self, after: int | None, limit: int) -> list[StoredEvent]:
        """Up to `limit` rows after a position (None: from the lowest id, even 0 or below)."""
        return self._rows(self._fetch(after, limit))

    def _rows(self, fetched: list[tuple[Any, ...]]) -> list[StoredEvent]:
        uuid = self._uuid
        # A payment's events are mostly near each other (received, then allocated): one
        # UUID object each, made once a page, saves about a tenth of a replay.
        uuids: dict[Any, UUID] = {}
        rows = []
        append = rows.append
        for position, originator, version, topic, state in fetched:
            originator_id = uuids.get(originator)
            if originator_id is None:
                originator_id = uuids[originator] = uuid(originator)
            if type(state) is not bytes:
                state = _state(state)
            append(StoredEvent(position, originator_id, version, topic, state))
        return rows

    def text_rows(self, after: int | None, limit: int) -> list[StoredEvent]:
        """As `rows`, with each originator id as its canonical text (what the chain hashes),
        which saves making UUID objects where nothing decodes the row."""
        return self._text_rows(self._fetch(after, limit))

    def text_rows_on(self, connection: Connection, after: int, limit: int) -> list[StoredEvent]:
        """As `text_rows`, read on the caller's connection in its transaction (a page of the
        audit chain). The connection must be to the event store's database."""
        return self._text_rows(fetch_on(connection, self._after, (after, limit)))

    def _text_rows(self, fetched: list[tuple[Any, ...]]) -> list[StoredEvent]:
        text = self._text
        if text is None:
            return [
                StoredEvent(position, originator, version, topic, _state(state))
                for position, originator, version, topic, state in fetched
            ]
        return [
            StoredEvent(position, text(originator), version, topic, _state(state))
            for position, originator, version, topic, state in fetched
        ]

    def _fetch(self, after: int | None, limit: int) -> list[tuple[Any, ...]]:
        if after is None:
            return fetch_all(self.engine, self._first, (limit,))
        return fetch_all(self.engine, self._after, (after, limit))

    def events(self, after: int, limit: int) -> list[tuple[int, Any]]:
        """Up to `limit` (position, domain event) pairs after a position, in order."""
        decode = self.to_domain_event
        return [(row.id, decode(row)) for row in self.rows(after, limit)]

    def events_on(self, connection: Connection, after: int, limit: int) -> list[tuple[int, Any]]:
        """As `events`, read on the caller's connection in its transaction (a read-model
        page). The connection must be to the event store's database."""
        decode = self.to_domain_event
        fetched = fetch_on(connection, self._after, (after, limit))
        return [(row.id, decode(row)) for row in self._rows(fetched)]

    def all_events(
        self, after: int = 0, page_size: int = 1000, stop: int | None = None
    ) -> Iterator[tuple[int, Any]]:
        """Every (position, domain event) after a position (up to `stop`), in bounded pages."""
        decode = self.to_domain_event
        while True:
            page = self.rows(after, page_size)
            for row in page:
                if stop is not None and row.id > stop:
                    return
                yield row.id, decode(row)
            if len(page) < page_size:
                return
            after = page[-1].id


def fetch_all(engine: Engine, sql: str, parameters: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Every row of one query through the bare driver (placeholders in the driver's own
    style, see `placeholder`), as plain tuples: no ORM or Row objects on paths that read
    every event."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(sql, parameters)
            fetched: list[tuple[Any, ...]] = cursor.fetchall()
        finally:
            cursor.close()
        connection.rollback()  # end the read transaction before the pool takes it back
    finally:
        connection.close()
    return fetched


def fetch_on(
    connection: Connection, sql: str, parameters: tuple[Any, ...]
) -> list[tuple[Any, ...]]:
    """As `fetch_all`, on a connection the caller holds, inside its transaction."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql, parameters)
        fetched: list[tuple[Any, ...]] = cursor.fetchall()
    finally:
        cursor.close()
    return fetched


def placeholder(engine: Engine) -> str:
    """The driver's parameter mark: sqlite3's qmark or psycopg2's format."""
    return "?" if engine.dialect.paramstyle == "qmark" else "%s"


def _uuid_from_bytes(value: Any) -> UUID:
    return UUID(bytes=bytes(value))


def _text_from_bytes(value: Any) -> str:
    return str(UUID(bytes=bytes(value)))


def _state(value: Any) -> bytes | str:
    # psycopg2 returns bytea as a memoryview.
    return value if isinstance(value, bytes | str) else bytes(value)
