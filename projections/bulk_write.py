"""Writes a page's read-model rows with the bare driver, in the page's own transaction.

SQLAlchemy's executemany compiled and processed every row's parameters (about a third of a
PostgreSQL rebuild's time, issue #9). Here each table's column types are asked once for
their bind processors (UTC normalisation, SQLite's date and time text), the rows become
tuples, and the driver gets one statement per table and page: COPY for new rows on
PostgreSQL, one multi-row INSERT ... ON CONFLICT for the upserts (psycopg2's execute_values),
and executemany of one prepared statement on SQLite. Values stored are the ones SQLAlchemy
would store: the same processors make them.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from functools import lru_cache
from operator import attrgetter, itemgetter
from typing import Any

from psycopg2.extras import execute_values
from sqlalchemy import Date, DateTime, Table, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect

from projections.schema import UTCDateTime

Row = dict[str, Any]


def insert_rows(connection: Connection, table: Table, rows: Sequence[Row]) -> None:
    """New rows (COPY on PostgreSQL)."""
    if not rows:
        return
    _insert(connection, table, *_columns_of(table, rows))


def insert_tuples(
    connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """New rows given as tuples of the named columns' values, in that order (COPY on
    PostgreSQL): a page's many postings and audit rows, with no dict made per row."""
    if not rows:
        return
    _insert(connection, table, columns, list(zip(*rows, strict=True)))


def processed_tuples(
    dialect: Dialect, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> list[Sequence[Any]]:
    """What `insert_tuples` writes, column by column, each value through its type's
    processor: made without the connection (for `insert_processed`)."""
    if not rows:
        return []
    return _processed(dialect, table, columns, list(zip(*rows, strict=True)))


def processed_rows(
    dialect: Dialect, table: Table, rows: Sequence[Row]
) -> tuple[list[str], list[Sequence[Any]]]:
    """`processed_tuples` of rows given as dicts: their columns, and the values."""
    if not rows:
        return [], []
    columns, values = _columns_of(table, rows)
    return columns, _processed(dialect, table, columns, values)


def insert_processed(
    connection: Connection, table: Table, columns: Sequence[str], values: list[Sequence[Any]]
) -> None:
    """New rows made by `processed_tuples` or `processed_rows` (COPY on PostgreSQL)."""
    if values:
        _insert_processed(connection, table, columns, values)


def _insert(
    connection: Connection, table: Table, columns: Sequence[str], values: list[Sequence[Any]]
) -> None:
    _insert_processed(
        connection, table, columns, _processed(connection.dialect, table, columns, values)
    )


def _insert_processed(
    connection: Connection, table: Table, columns: Sequence[str], values: list[Sequence[Any]]
) -> None:
    name, names = _quoted(connection.dialect, table, columns)
    batch = connection.info.get(_BATCH)
    if batch is not None:
        batch.add(f"INSERT INTO {name} ({names}) VALUES %s", zip(*values, strict=True))
    elif connection.dialect.name == "postgresql":
        buffer = io.StringIO(_copy_text_of_columns(values))
        sql = f"COPY {name} ({names}) FROM STDIN"
        with _cursor(connection, sql) as cursor:
            cursor.copy_expert(sql, buffer)
    else:
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {name} ({names}) VALUES ({marks})"
        with _cursor(connection, sql) as cursor:
            cursor.executemany(sql, zip(*values, strict=True))


def upsert_rows(
    connection: Connection,
    table: Table,
    keys: Sequence[str],
    rows: Sequence[Row],
    *,
    add: Sequence[str] = (),
) -> None:
    """Insert rows, or on a key already there: add the `add` columns to the stored values
    if given, else replace every non-key column. Keys must be unique within `rows`."""
    if not rows:
        return
    columns, values = _tuples(connection.dialect, table, rows)
    name, names = _quoted(connection.dialect, table, columns)
    quote = connection.dialect.identifier_preparer.quote
    if add:
        updates = [f"{quote(c)} = {name}.{quote(c)} + excluded.{quote(c)}" for c in add]
    else:
        updates = [f"{quote(c)} = excluded.{quote(c)}" for c in columns if c not in keys]
    conflict = f"ON CONFLICT ({', '.join(map(quote, keys))}) DO UPDATE SET {', '.join(updates)}"
    batch = connection.info.get(_BATCH)
    if batch is not None:
        batch.add(f"INSERT INTO {name} ({names}) VALUES %s {conflict}", values)
    elif connection.dialect.name == "postgresql":
        sql = f"INSERT INTO {name} ({names}) VALUES %s {conflict}"
        with _cursor(connection, sql) as cursor:
            execute_values(cursor, sql, values, page_size=len(values))
    else:
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {name} ({names}) VALUES ({marks}) {conflict}"
        with _cursor(connection, sql) as cursor:
            cursor.executemany(sql, values)


_BATCH = "income_ledger.bulk_write.batch"


class _Batch:
    """Statements made by this module, held to be sent in one round trip (`one_round_trip`)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.statements: list[bytes] = []

    def add(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """`sql` with its one `VALUES %s` made of `rows`, each value adapted by the driver as
        execute_values adapts it (psycopg2's mogrify)."""
        head, tail = sql.split("%s")
        cursor = self.connection.connection.cursor()
        try:
            mogrify = cursor.mogrify
            rows_sql = b",".join(
                mogrify("(" + ",".join(["%s"] * len(row)) + ")", row) for row in rows
            )
        finally:
            cursor.close()
        self.statements.append(head.encode() + rows_sql + tail.encode())

    def send(self) -> None:
        if not self.statements:
            return
        sql = b";\n".join(self.statements)
        self.statements = []
        with _cursor(self.connection, sql[:500].decode(errors="replace")) as cursor:
            cursor.execute(sql)


@contextmanager
def one_round_trip(connection: Connection) -> Iterator[None]:
    """On PostgreSQL, the rows this module writes inside are sent together, in one round trip
    when the block ends (new rows as multi-row INSERTs, not COPY): for a following
    projector's small pages, whose cost is the round trips, not the rows. Any other
    statement made on the connection meanwhile sends them first, so the order of the
    writes is kept. Elsewhere (SQLite) nothing changes."""
    if connection.dialect.name != "postgresql" or _BATCH in connection.info:
        yield
        return
    batch = _Batch(connection)

    def send_first(*_: Any) -> None:
        batch.send()

    connection.info[_BATCH] = batch
    event.listen(connection, "before_cursor_execute", send_first)
    try:
        yield
        batch.send()
    finally:
        event.remove(connection, "before_cursor_execute", send_first)
        del connection.info[_BATCH]


@contextmanager
def _cursor(connection: Connection, sql: str) -> Iterator[Any]:
    """A cursor in the connection's transaction; driver errors raised as SQLAlchemy's
    (IntegrityError, DataError, OperationalError...), as every other statement's are."""
    dbapi_error = connection.dialect.loaded_dbapi.Error
    cursor = connection.connection.cursor()
    try:
        yield cursor
    except dbapi_error as error:
        raise sa_exc.DBAPIError.instance(sql, None, error, dbapi_error) from error
    finally:
        cursor.close()


def _quoted(dialect: Dialect, table: Table, columns: Sequence[str]) -> tuple[str, str]:
    quote = dialect.identifier_preparer.quote
    return quote(table.name), ", ".join(quote(c) for c in columns)


def _tuples(
    dialect: Dialect, table: Table, rows: Sequence[Row]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    columns, values = _columns_of(table, rows)
    return columns, list(zip(*_processed(dialect, table, columns, values), strict=True))


def _columns_of(table: Table, rows: Sequence[Row]) -> tuple[list[str], list[Sequence[Any]]]:
    """The rows column by column. Like SQLAlchemy's executemany: the first row's keys name
    the columns (in the table's order). Taken row by row, then turned (zip): a pass over
    every row per column, as before, missed the CPU's caches at each of thousands of dicts
    and took 2-3 times as long (a rebuild's 11,000 payment rows, issue #9)."""
    columns = [c.name for c in table.columns if c.name in rows[0]]
    if len(columns) == 1:  # itemgetter of one name gives the value, not a 1-tuple
        return columns, [[row[columns[0]] for row in rows]]
    return columns, list(zip(*map(itemgetter(*columns), rows), strict=True))


def _processed(
    dialect: Dialect, table: Table, columns: Sequence[str], values: list[Sequence[Any]]
) -> list[Sequence[Any]]:
    """Each column's values (`values`, one sequence per column of `columns`) through its
    type's bind processor. Column by column: most columns need no processor."""
    processed_columns = []
    for name, column in zip(columns, values, strict=True):
        process = _processor(dialect, table, name)
        if process is not None and _by_value(table, name) and _equal_is_same(column):
            column = _each_distinct_once(process, column)
        elif process is not None:
            column = [None if value is None else process(value) for value in column]
        processed_columns.append(column)
    return processed_columns


def _each_distinct_once(process: Callable[[Any], Any], column: Sequence[Any]) -> list[Any]:
    """The column's values processed, each distinct one once: an event's postings share
    their times. A processor with a `texts` memo (SQLite's dates and UTC times, below)
    shares it with every column and page of its kind: a receipt's recorded time is also its
    audit row's and its payment row's."""
    texts: dict[Any, Any] | None = getattr(process, "texts", None)
    if texts is None:
        texts = {}
    with _MEMO_LOCK:  # another thread's memo starting again would take this one's texts
        if len(texts) > _MEMO_LIMIT:
            texts.clear()
        new = [v for v in dict.fromkeys(column) if v not in texts and v is not None]
        texts.update(zip(new, map(process, new), strict=True))
        texts[None] = None
        return list(map(texts.__getitem__, column))


# Texts kept by a memo before it starts again (about 9 MB of times and their texts).
_MEMO_LIMIT = 50_000
# The memos are the process's, shared by its threads (a SQLite write lock orders only the
# writers of one database).
_MEMO_LOCK = threading.Lock()


@lru_cache(maxsize=4096)  # scratch tables are new Table objects each rebuild
def _processor(dialect: Dialect, table: Table, column: str) -> Callable[[Any], Any] | None:
    # The dialect's own type (SQLite's DATETIME formats its text): what SQLAlchemy runs.
    column_type = table.c[column].type.dialect_impl(dialect)
    process = column_type.bind_processor(dialect)
    if dialect.name == "sqlite" and process is not None:
        return _sqlite_fast_path(column_type, process)
    return process


@lru_cache(maxsize=4096)
def _by_value(table: Table, column: str) -> bool:
    """Whether equal values of the column can be processed to equal values, so that each
    distinct one needs processing once: a UTCDateTime or a date, if the values themselves
    allow it (_equal_is_same); not, say, a Numeric (Decimal("1.0") == Decimal("1.00"))."""
    column_type = table.c[column].type
    if isinstance(column_type, UTCDateTime):
        return True
    return isinstance(column_type, Date) and not isinstance(column_type, DateTime)


# SQLAlchemy's default text for SQLite's DATETIME and DATE (a type with a storage_format of
# its own keeps SQLAlchemy's processor).
_SQLITE_DATETIME_FORMAT = (
    "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
)
_SQLITE_DATE_FORMAT = "%(year)04d-%(month)02d-%(day)02d"


def _sqlite_fast_path(
    column_type: Any, process: Callable[[Any], Any]
) -> Callable[[Any], Any] | None:
    """SQLite's date and time processors in C where they give SQLAlchemy's very text (a
    tenth of a SQLite rebuild went to formatting them in Python, issue #9): an aware
    datetime of the read model's UTCDateTime as UTC `YYYY-MM-DD HH:MM:SS.ffffff`, a date as
    `YYYY-MM-DD`; any other value, SQLAlchemy's processor. tests/projections/test_bulk_write
    holds both equal to SQLAlchemy's over generated values."""
    impl = getattr(column_type, "impl_instance", column_type)
    storage_format = getattr(impl, "_storage_format", None)
    if isinstance(column_type, UTCDateTime) and storage_format == _SQLITE_DATETIME_FORMAT:

        def utc_text(value: Any) -> Any:
            if type(value) is datetime and value.tzinfo is not None:
                return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]
            return process(value)

        # An aware time's text depends on its instant only, which equal times share;
        # _each_distinct_once uses it only where equal values are the same (UTC or naive).
        utc_text.texts = _SQLITE_UTC_TEXTS  # type: ignore[attr-defined]
        return utc_text
    is_date = isinstance(impl, Date) and not isinstance(impl, DateTime)
    if is_date and storage_format == _SQLITE_DATE_FORMAT:

        def date_text(value: Any) -> Any:
            return value.isoformat() if type(value) is date else process(value)

        date_text.texts = _SQLITE_DATE_TEXTS  # type: ignore[attr-defined]
        return date_text
    return process


_SQLITE_UTC_TEXTS: dict[Any, Any] = {}
_SQLITE_DATE_TEXTS: dict[Any, Any] = {}


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text_of_columns(columns: list[Sequence[Any]]) -> str:
    """Rows, given column by column, in COPY's text format: tab-separated, \\N for NULL,
    backslash escapes; each column's values formatted by their type."""
    texts = [_copy_column(column) for column in columns]
    return "\n".join(map("\t".join, zip(*texts, strict=True))) + "\n"


def _copy_column(values: Sequence[Any]) -> list[str]:
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if kinds <= {int}:
        return ["\\N" if value is None else str(value) for value in values]
    if kinds == {str}:
        if not _needs_escapes("".join(value for value in values if value is not None)):
            return ["\\N" if value is None else value for value in values]
        return ["\\N" if value is None else value.translate(_COPY_ESCAPES) for value in values]
    if kinds == {date} or kinds == {datetime}:
        if _equal_is_same(values):
            # Each distinct value formatted once: an event's postings share their times.
            texts = {v: v.isoformat() for v in dict.fromkeys(values) if v is not None}
            texts[None] = "\\N"
            return list(map(texts.__getitem__, values))
        return ["\\N" if value is None else value.isoformat() for value in values]
    return [_copy_value(value) for value in values]


def _equal_is_same(values: Sequence[Any]) -> bool:
    """Whether values that compare equal are the same to a date or time processor: dates,
    or datetimes all naive or all UTC. Not so in other zones: equal instants in two zones
    fall on two calendar days, and in one zone the hour the clocks repeat is two instants
    that compare equal (fold 0 and 1)."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if kinds == {date}:
        return True
    return kinds == {datetime} and _one_text_per_value(values)


def _one_text_per_value(values: Sequence[Any]) -> bool:
    """Whether equal datetimes have one isoformat text: all naive or all UTC (equal aware
    times in other zones name one instant with different offsets)."""
    return set(map(attrgetter("tzinfo"), filter(None, values))) <= {None, UTC}


def _needs_escapes(text: str) -> bool:
    """Whether any of COPY's special characters is in the text (one scan per column: most
    columns have none, and then no value needs translating)."""
    return "\\" in text or "\t" in text or "\n" in text or "\r" in text


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
