"""The bare-driver writer stores what it is given: escapes, NULLs, dates, both backends.

projections.bulk_write formats COPY's text column by column (PostgreSQL) and hands tuples
to executemany (SQLite); these rows hold every kind of value the read model writes.
"""

from __future__ import annotations

import sys
import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import BigInteger, Column, Date, Integer, MetaData, String, Table, select
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.exc import IntegrityError

from projections import bulk_write
from projections.bulk_write import (
    _copy_column,
    _processor,
    insert_rows,
    insert_tuples,
    upsert_rows,
)
from projections.runner import projection_engine
from projections.schema import UTCDateTime

ROWS = [
    {
        "id": 1,
        "text": "tab\there, newline\nthere, back\\slash, return\r, £ café",
        "amount_pence": -(2**40),
        "at": datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=UTC),
        "day": date(2026, 3, 31),
    },
    {"id": 2, "text": "", "amount_pence": 0, "at": None, "day": None},
    {"id": 3, "text": None, "amount_pence": None, "at": None, "day": date(2026, 4, 1)},
    {"id": 4, "text": "\\N", "amount_pence": 7, "at": None, "day": None},
]


def test_rows_come_back_as_written(database_url) -> None:
    engine = projection_engine(database_url)
    table = Table(
        "bulk_write_probe",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("text", String(200)),
        Column("amount_pence", BigInteger),
        Column("at", UTCDateTime),
        Column("day", Date),
    )
    table.metadata.create_all(engine)
    try:
        with engine.begin() as connection:
            insert_rows(connection, table, ROWS[:2])
            upsert_rows(connection, table, ["id"], ROWS[2:])
        with engine.connect() as connection:
            stored = [
                dict(row._mapping) for row in connection.execute(select(table).order_by("id"))
            ]
        assert stored == ROWS
    finally:
        table.metadata.drop_all(engine)
        engine.dispose()


def test_rows_written_in_one_round_trip_come_back_as_written(database_url) -> None:
    """one_round_trip (a following projector's small pages): the writes are held until the
    block ends or another statement is made on the connection, which sees them (order
    kept); what is stored is what COPY and execute_values store."""
    engine = projection_engine(database_url)
    table = Table(
        "bulk_write_probe_batched",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("text", String(200)),
        Column("amount_pence", BigInteger),
        Column("at", UTCDateTime),
        Column("day", Date),
    )
    table.metadata.create_all(engine)
    postgres = engine.dialect.name == "postgresql"

    def held(connection) -> int:  # counted past SQLAlchemy: sends nothing held
        cursor = connection.connection.cursor()
        cursor.execute("SELECT count(*) FROM bulk_write_probe_batched")
        (count,) = cursor.fetchone()
        cursor.close()
        return int(count)

    try:
        with engine.begin() as connection, bulk_write.one_round_trip(connection):
            insert_rows(connection, table, ROWS[:1])
            assert held(connection) == (0 if postgres else 1)
            seen = connection.execute(select(table.c.id)).scalars().all()
            assert seen == [1]  # another statement sends what is held first
            insert_tuples(connection, table, ["id", "text"], [(2, "x")])
            upsert_rows(connection, table, ["id"], ROWS[1:])
            assert held(connection) == (1 if postgres else 4)
        with engine.connect() as connection:
            stored = [
                dict(row._mapping) for row in connection.execute(select(table).order_by("id"))
            ]
        assert stored == ROWS
    finally:
        table.metadata.drop_all(engine)
        engine.dispose()


def test_rows_given_as_tuples_come_back_as_written(database_url) -> None:
    """insert_tuples (a page's postings and audit rows, no dict per row) stores what
    insert_rows stores: columns named once, values in their order, any order of the table's."""
    engine = projection_engine(database_url)
    table = Table(
        "bulk_write_probe_tuples",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("text", String(200)),
        Column("amount_pence", BigInteger),
        Column("at", UTCDateTime),
        Column("day", Date),
    )
    columns = ["day", "id", "at", "text", "amount_pence"]
    table.metadata.create_all(engine)
    try:
        with engine.begin() as connection:
            insert_tuples(connection, table, columns, [])
            insert_tuples(
                connection, table, columns, [tuple(row[c] for c in columns) for row in ROWS]
            )
        with engine.connect() as connection:
            stored = [
                dict(row._mapping) for row in connection.execute(select(table).order_by("id"))
            ]
        assert stored == ROWS
    finally:
        table.metadata.drop_all(engine)
        engine.dispose()


def test_values_are_stored_as_sqlalchemy_stores_them(database_url) -> None:
    """Reporting tools read the read model's tables with their own SQL: a rebuilt table's
    dates and times must be stored in the same form as the ones the projector wrote row by
    row through SQLAlchemy (on SQLite, its text form, not sqlite3's own)."""
    engine = projection_engine(database_url)
    metadata = MetaData()
    by_bulk, by_sqlalchemy = (
        Table(name, metadata, Column("id", Integer, primary_key=True), Column("at", UTCDateTime))
        for name in ("bulk_write_probe_bulk", "bulk_write_probe_core")
    )
    rows = [{"id": 1, "at": datetime(2026, 3, 31, 23, 59, 59, 5, tzinfo=UTC)}]
    metadata.create_all(engine)
    try:
        with engine.begin() as connection:
            insert_rows(connection, by_bulk, rows)
            connection.execute(by_sqlalchemy.insert(), rows)
        with engine.connect() as connection:
            stored = [
                connection.exec_driver_sql(f"SELECT CAST(at AS TEXT) FROM {table.name}").scalar()
                for table in (by_bulk, by_sqlalchemy)
            ]
        assert stored[0] == stored[1]
    finally:
        metadata.drop_all(engine)
        engine.dispose()


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones()
    ),
    day=st.dates(),
)
def test_sqlite_dates_and_times_are_sqlalchemys_text(moment, day) -> None:
    """bulk_write formats SQLite's dates and UTC times in C: the text must be SQLAlchemy's
    own processor's, for every aware time in any zone and every date (no database)."""
    dialect = sqlite_dialect()
    table = Table(
        "probe", MetaData(), Column("at", UTCDateTime), Column("day", Date), Column("n", Integer)
    )
    for column, value in (("at", moment), ("day", day), ("day", moment)):
        sqlalchemy_own = table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
        assert _processor(dialect, table, column)(value) == sqlalchemy_own(value)


def test_repeated_times_are_stored_as_sqlalchemy_stores_them(database_url) -> None:
    """Each distinct time or date is processed once per column (an event's postings share
    them); equal instants given in other zones are still stored as SQLAlchemy stores each."""
    engine = projection_engine(database_url)
    metadata = MetaData()
    tables = [
        Table(
            name,
            metadata,
            Column("id", Integer, primary_key=True),
            Column("at", UTCDateTime),
            Column("day", Date),
        )
        for name in ("bulk_write_repeats_bulk", "bulk_write_repeats_core")
    ]
    utc = datetime(2026, 6, 30, 23, 30, tzinfo=UTC)
    london = utc.astimezone(ZoneInfo("Europe/London"))  # the same instant, +01:00
    times = [utc, london, utc, None, london, utc]
    rows = [{"id": n, "at": at, "day": at and at.date()} for n, at in enumerate(times)]
    metadata.create_all(engine)
    try:
        with engine.begin() as connection:
            insert_rows(connection, tables[0], rows)
            connection.execute(tables[1].insert(), rows)
        with engine.connect() as connection:
            bulk, core = (
                connection.exec_driver_sql(
                    f"SELECT id, CAST(at AS TEXT), CAST(day AS TEXT) FROM {table.name} ORDER BY id"
                ).all()
                for table in tables
            )
        assert bulk == core
    finally:
        metadata.drop_all(engine)
        engine.dispose()


@pytest.mark.parametrize("memo_limit", [50_000, 0])
def test_times_met_again_in_later_tables_and_pages_are_stored_as_sqlalchemy_stores_them(
    database_url, monkeypatch, memo_limit
) -> None:
    """SQLite's time and date texts are remembered across columns, tables and calls (a
    receipt's time is in its postings, its audit row and its payment row): a time met again,
    in another column or table, after a write of it in another zone, or after the memo
    starts again (a limit of 0), is still stored as SQLAlchemy stores it."""
    monkeypatch.setattr(bulk_write, "_MEMO_LIMIT", memo_limit)
    engine = projection_engine(database_url)
    metadata = MetaData()
    tables = [
        Table(
            name,
            metadata,
            Column("id", Integer, primary_key=True),
            Column("at", UTCDateTime),
            Column("later", UTCDateTime),
            Column("day", Date),
        )
        for name in ("bulk_write_memo_a", "bulk_write_memo_b", "bulk_write_memo_core")
    ]
    utc = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    london = utc.astimezone(ZoneInfo("Europe/London"))  # the same instant, +01:00
    other = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 01:30 London, the clocks gone back
    pages = [
        [(1, utc, other, utc.date()), (2, utc, None, None)],
        [(3, other, utc, other.date()), (4, london, utc, london.date())],  # a zone: no memo
        [(5, utc, utc, utc.date()), (6, other, other, None)],
    ]
    columns = ("id", "at", "later", "day")
    metadata.create_all(engine)
    try:
        with engine.begin() as connection:
            for page in pages:
                insert_tuples(connection, tables[0], columns, page)
                insert_tuples(connection, tables[1], columns, page[::-1])
                connection.execute(
                    tables[2].insert(), [dict(zip(columns, row, strict=True)) for row in page]
                )
        with engine.connect() as connection:
            a, b, core = (
                connection.exec_driver_sql(
                    f"SELECT id, CAST(at AS TEXT), CAST(later AS TEXT), CAST(day AS TEXT) "
                    f"FROM {table.name} ORDER BY id"
                ).all()
                for table in tables
            )
        assert a == core
        assert b == core
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def test_two_threads_writing_times_at_once_each_store_all_of_theirs(
    database_url, tmp_path, monkeypatch
) -> None:
    """SQLite's time texts are remembered for the whole process, and the memo starts again
    when full: two threads writing at once (here to two databases, which no write lock
    orders) never lose each other's texts half way through a column (a KeyError)."""
    monkeypatch.setattr(bulk_write, "_MEMO_LIMIT", 100)  # starts again every page or two
    urls = [database_url, f"sqlite:///{tmp_path / 'second.db'}"]
    if not database_url.startswith("sqlite"):
        urls[1] = database_url  # one database, a table each
    metadata = MetaData()
    tables = [
        Table(
            f"bulk_write_threads_{n}",
            metadata,
            Column("id", Integer, primary_key=True),
            Column("at", UTCDateTime),
        )
        for n in range(2)
    ]
    engines = [projection_engine(url) for url in urls]
    for engine, table in zip(engines, tables, strict=True):
        table.create(engine)
    pages, rows_per_page = 100, 400
    errors: list[BaseException] = []

    def write(engine, table, n: int) -> None:
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=n)
        try:
            for page in range(pages):
                ids = range(page * rows_per_page, (page + 1) * rows_per_page)
                rows = [(i, start + timedelta(seconds=i)) for i in ids]
                with engine.begin() as connection:
                    insert_tuples(connection, table, ("id", "at"), rows)
        except BaseException as error:  # reported by the test, below
            errors.append(error)

    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often, as on a busy server
    try:
        threads = [
            threading.Thread(target=write, args=(engine, table, n))
            for n, (engine, table) in enumerate(zip(engines, tables, strict=True))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch_interval)
    try:
        assert errors == []
        for engine, table in zip(engines, tables, strict=True):
            with engine.connect() as connection:
                stored = connection.execute(select(table.c.id)).all()
            assert len(stored) == pages * rows_per_page
    finally:
        for engine, table in zip(engines, tables, strict=True):
            table.drop(engine)
            engine.dispose()


def test_copy_text_keeps_each_zones_offset() -> None:
    """COPY's text of equal instants in two zones: one text each, not the first one's (a
    plain timestamp column keeps the wall clock, not the instant)."""
    utc = datetime(2026, 6, 30, 23, 30, tzinfo=UTC)
    london = utc.astimezone(ZoneInfo("Europe/London"))
    assert _copy_column((utc, london, None, utc)) == [
        "2026-06-30T23:30:00+00:00",
        "2026-07-01T00:30:00+01:00",
        "\\N",
        "2026-06-30T23:30:00+00:00",
    ]


def test_equal_times_that_are_other_instants_or_days_are_stored_as_sqlalchemy_stores_them(
    database_url,
) -> None:
    """Times that compare equal yet are processed differently: in one zone, an hour the
    clocks repeat (fold 0 and 1 are equal, and are two instants), and equal instants in two
    zones given to a date column (two calendar days)."""
    engine = projection_engine(database_url)
    metadata = MetaData()
    tables = [
        Table(
            name,
            metadata,
            Column("id", Integer, primary_key=True),
            Column("at", UTCDateTime),
            Column("day", Date),
        )
        for name in ("bulk_write_equal_bulk", "bulk_write_equal_core")
    ]
    london = ZoneInfo("Europe/London")
    first = datetime(2026, 10, 25, 1, 30, tzinfo=london)  # BST, 00:30 UTC
    second = first.replace(fold=1)  # GMT, 01:30 UTC
    assert first == second and first.astimezone(UTC) != second.astimezone(UTC)
    utc = datetime(2026, 6, 30, 23, 30, tzinfo=UTC)
    days = [utc, utc.astimezone(london), utc]  # equal instants, two calendar days
    rows = [
        {"id": n, "at": at, "day": day}
        for n, (at, day) in enumerate(zip([first, second, first], days, strict=True))
    ]
    metadata.create_all(engine)
    try:
        with engine.begin() as connection:
            insert_rows(connection, tables[0], rows)
            connection.execute(tables[1].insert(), rows)
        with engine.connect() as connection:
            bulk, core = (
                connection.exec_driver_sql(
                    f"SELECT id, CAST(at AS TEXT), CAST(day AS TEXT) FROM {table.name} ORDER BY id"
                ).all()
                for table in tables
            )
        assert [row[:2] for row in bulk] == [row[:2] for row in core]
        if engine.dialect.name == "sqlite":
            # PostgreSQL's COPY takes a datetime's own calendar day for a date column, and
            # psycopg2's parameter the session zone's: apart before this dedupe, and the read
            # model gives date columns dates (uk_date), so held on SQLite only.
            assert bulk == core
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def _probe(name: str) -> Table:
    return Table(
        name,
        MetaData(),
        Column("id", BigInteger, primary_key=True),
        Column("text", String(200)),
        Column("amount_pence", BigInteger),
        Column("day", Date),
    )


def test_one_round_trip_escapes_what_sql_would_read_as_its_own(database_url) -> None:
    """The held writes are SQL text: quotes, percent marks (the batch is sent with no
    parameters), a mogrify mark, characters past the BMP and the largest pence are stored
    as given, and an upsert that adds (`add`) adds."""
    engine = projection_engine(database_url)
    table = _probe("bulk_write_probe_escapes")
    table.metadata.create_all(engine)
    rows = [
        {"id": 1, "text": "O'Brien's \"rent\"; --", "amount_pence": 2**63 - 1, "day": None},
        {"id": 2, "text": "100% of %s and %(x)s", "amount_pence": -(2**63), "day": None},
        {
            "id": 3,
            "text": "\U0001d11e na\u00efve \u2018q\u2019 \\ E'\\x00'",
            "amount_pence": 0,
            "day": None,
        },
    ]
    try:
        with engine.begin() as connection, bulk_write.one_round_trip(connection):
            insert_rows(connection, table, rows)
            upsert_rows(
                connection,
                table,
                ["id"],
                [{"id": 3, "text": "x", "amount_pence": 5, "day": date(2026, 12, 1)}],
                add=["amount_pence"],
            )
        with engine.connect() as connection:
            stored = [
                dict(row._mapping) for row in connection.execute(select(table).order_by("id"))
            ]
        assert stored == [*rows[:2], rows[2] | {"amount_pence": 5}]
    finally:
        table.metadata.drop_all(engine)
        engine.dispose()


def test_an_error_in_one_round_trip_leaves_nothing_of_the_transaction(database_url) -> None:
    """A held write that fails (here the second of three) fails the transaction: none of
    the rows before it, held or sent, are stored; the error is SQLAlchemy's, as others'."""
    engine = projection_engine(database_url)
    table = _probe("bulk_write_probe_error")
    table.metadata.create_all(engine)
    try:
        with (
            pytest.raises(IntegrityError),
            engine.begin() as connection,
            bulk_write.one_round_trip(connection),
        ):
            connection.execute(table.insert().values(id=10, text="sent before"))
            insert_rows(connection, table, [{"id": 1, "text": "held"}])
            insert_rows(connection, table, [{"id": 10, "text": "duplicate"}])
            insert_rows(connection, table, [{"id": 2, "text": "after"}])
        with (  # the same when the next statement sends them
            pytest.raises(IntegrityError),
            engine.begin() as connection,
            bulk_write.one_round_trip(connection),
        ):
            insert_rows(connection, table, [{"id": 1, "text": "held"}])
            insert_rows(connection, table, [{"id": 1, "text": "duplicate"}])
            connection.execute(select(table.c.id))
        with engine.connect() as connection:
            assert connection.execute(select(table.c.id)).all() == []
            # Nothing held on the pooled connection for its next user.
            assert bulk_write._BATCH not in connection.info
        with engine.begin() as connection:
            insert_rows(connection, table, [{"id": 3, "text": "next"}])
        with engine.connect() as connection:
            assert connection.execute(select(table.c.id)).scalars().all() == [3]
    finally:
        table.metadata.drop_all(engine)
        engine.dispose()
