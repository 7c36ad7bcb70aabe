"""Tamper evidence: a hash chain over the stored events, and a daily seal of its head.

Each event row, in its global order, gets a link: the SHA-256 of the previous link and of a
canonical encoding of the row exactly as stored (position, originator id, originator version,
topic and state bytes). Changing, deleting or inserting a row among chained history breaks
every link from there on, and `verify_chain` recomputes the chain from the stored rows to find
the first position that no longer matches.

The chain is a projection like the read model, kept exactly once: a page's links, its seals
and the tracking position (`projection_tracking`, name `audit_chain`) commit in one
transaction, and the position is read under a row lock in that transaction.

What it cannot do on its own: someone able to rewrite the events can rewrite the chain too.
That is what the seals are for. A seal is the chain's head at the end of a UK business date
(the date events were recorded); published outside the system (emailed to the auditors,
printed in the minutes), a seal later pins down all history up to its position. Rows
appended at the tail before they are chained look like any other new event. See
docs/auditors.md.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from domain.errors import InvalidRequest
from projections.event_reader import EventReader, StoreAddress, fetch_all, placeholder
from projections.ledger_view import uk_date
from projections.runner import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, tracked_position
from projections.runner import _lock_tracking_row as lock_tracking_row
from projections.schema import UTCDateTime, projection_tracking
from projections.segments import process_count, run_in_processes, split

CHAIN_NAME = "audit_chain"
CHAIN_VERSION = "income-ledger/audit-chain/sha256/v1"
# The link "before" the first event: fixed, and naming the encoding so that a future one
# can never be confused with this.
GENESIS_LINK = hashlib.sha256(CHAIN_VERSION.encode()).hexdigest()
MAX_FINDINGS = 20

chain_metadata = MetaData()
audit_chain = Table(
    "audit_chain",
    chain_metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(80), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("link_sha256", String(64), nullable=False),
)
audit_seals = Table(
    "audit_seals",
    chain_metadata,
    Column("business_date", Date, primary_key=True),
    Column("first_position", BigInteger, nullable=False),
    Column("last_position", BigInteger, nullable=False),
    Column("events_count", BigInteger, nullable=False),
    Column("link_sha256", String(64), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)


class StoredRow(Protocol):
    """An event row as stored (an eventsourcing Notification)."""

    @property
    def id(self) -> int: ...
    @property
    def originator_id(self) -> UUID | str: ...
    @property
    def originator_version(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def state(self) -> bytes: ...


RowSource = Callable[[int | None, int], Sequence[StoredRow]]
"""Reads up to `limit` stored rows after a position (None: from the very first row, whatever
its id), in position order."""


class ChainBroken(RuntimeError):
    """The chain's own tables were changed by hand: its last link is not where its tracking
    position says, so it must not be extended."""


def create_chain_tables(engine: Engine | Connection) -> None:
    chain_metadata.create_all(engine)


def has_chain_tables(engine: Engine) -> bool:
    """False on a database initialised before the chain existed (`db init` adds them)."""
    existing = set(inspect(engine).get_table_names())
    return set(chain_metadata.tables) <= existing


def canonical_row(row: StoredRow) -> bytes:
    """The stored row as bytes: each field length-prefixed, so no two rows encode alike."""
    state = row.state
    # A hand edit can leave text where bytes were stored (SQLite's replace() does): hash
    # what it now says, so it is reported as a mismatch rather than crashing the check.
    state_bytes = state.encode() if isinstance(state, str) else bytes(state)
    position = str(row.id).encode()
    originator = str(row.originator_id).encode()
    version = str(row.originator_version).encode()
    topic = str(row.topic).encode()
    return b"".join(
        (
            _LENGTH(len(position)),
            position,
            _LENGTH(len(originator)),
            originator,
            _LENGTH(len(version)),
            version,
            _LENGTH(len(topic)),
            topic,
            _LENGTH(len(state_bytes)),
            state_bytes,
        )
    )


def next_link(previous: bytes, row: StoredRow) -> bytes:
    """The link of `row`, given the link before it (32 raw bytes each)."""
    return _sha256(previous + canonical_row(row))


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


_LENGTH = struct.Struct(">Q").pack  # 8 bytes, big-endian


# ---- keeping the chain ---------------------------------------------------------------------


class AuditChain:
    """Extends the chain over new events, a page per transaction, exactly once."""

    def __init__(
        self,
        engine: Engine,
        source: RowSource,
        decode: Callable[[StoredRow], Any],
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        name: str = CHAIN_NAME,
        page_source: Callable[[Connection, int, int], Sequence[StoredRow]] | None = None,
    ) -> None:
        """`page_source`: `source` read on the page's connection (the event store in the
        chain's database), which saves a page a second connection's round trips."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page size must be 1 to {MAX_PAGE_SIZE}")
        self.engine = engine
        self.source = source
        self.decode = decode
        self.page_size = page_size
        self.name = name
        self.page_source = page_source

    def position(self) -> int:
        with self.engine.connect() as connection:
            return tracked_position(connection, self.name)

    def process_page(self, stop: int | None = None) -> int:
        """Chain the next page of events (up to `stop`); returns how many it chained."""
        with self.engine.begin() as connection:
            tracked = lock_tracking_row(connection, self.name)
            if self.page_source is None:
                read = self.source(tracked, self.page_size)
            else:
                read = self.page_source(connection, tracked, self.page_size)
            rows = [row for row in read if row.id > tracked and (stop is None or row.id <= stop)]
            if not rows:
                return 0
            link, day = _head(connection, tracked)
            now = datetime.now(UTC)
            links, seals = self._link(rows, link, day, now)
            connection.execute(insert(audit_chain), links)
            _write_seals(connection, seals)
            connection.execute(
                update(projection_tracking)
                .where(projection_tracking.c.projection_name == self.name)
                .values(position=rows[-1].id, updated_at=now)
            )
            return len(rows)

    def _link(
        self, rows: Sequence[StoredRow], link: bytes, day: date | None, now: datetime
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The page's links, and each UK business date's seal rows (its head so far)."""
        links: list[dict[str, Any]] = []
        seals: dict[date, dict[str, Any]] = {}
        for row in rows:
            recorded_at = self.decode(row).timestamp
            link = next_link(link, row)
            # Seal days never go backwards, even if two writers' clocks disagree by a moment
            # around midnight: a seal covers everything before its position.
            day = max(day, uk_date(recorded_at)) if day else uk_date(recorded_at)
            links.append(
                {
                    "position": row.id,
                    "event_id": f"{row.originator_id}:{row.originator_version}",
                    "recorded_at": recorded_at,
                    "link_sha256": link.hex(),
                }
            )
            seal = seals.setdefault(
                day, {"business_date": day, "first_position": row.id, "events_count": 0}
            )
            seal.update(last_position=row.id, link_sha256=link.hex(), updated_at=now)
            seal["events_count"] += 1
        return links, list(seals.values())

    def catch_up(
        self, stop: int | None = None, progress: Callable[[int], None] | None = None
    ) -> int:
        """Chain pages until there are no more events (or `stop` is reached)."""
        chained = 0
        while count := self.process_page(stop):
            chained += count
            if progress is not None:
                progress(count)
        return chained


def _head(connection: Connection, tracked: int) -> tuple[bytes, date | None]:
    """The link at the tracked position and the latest seal's date.

    The last link must sit exactly at the tracked position: anything else means the chain's
    tables were changed by hand, and extending them would only bury that.
    """
    latest_seal = select(func.max(audit_seals.c.business_date)).scalar_subquery()
    last = connection.execute(  # one round trip for both
        select(audit_chain.c.position, audit_chain.c.link_sha256, latest_seal.label("day"))
        .order_by(audit_chain.c.position.desc())
        .limit(1)
    ).first()
    last_position = int(last.position) if last else 0
    if last_position != tracked:
        raise ChainBroken(
            f"the audit chain's last link is at position {last_position} but its tracked "
            f"position is {tracked}: the chain's tables were changed by hand; run "
            "`income-ledger audit verify` to see where"
        )
    if last is None:
        return bytes.fromhex(GENESIS_LINK), None
    return bytes.fromhex(last.link_sha256), last.day


def _write_seals(connection: Connection, seals: list[dict[str, Any]]) -> None:
    statement = (
        pg_insert(audit_seals)
        if connection.dialect.name == "postgresql"
        else sqlite_insert(audit_seals)
    )
    statement = statement.on_conflict_do_update(
        index_elements=["business_date"],
        set_={
            "last_position": statement.excluded.last_position,
            "link_sha256": statement.excluded.link_sha256,
            "events_count": audit_seals.c.events_count + statement.excluded.events_count,
            "updated_at": statement.excluded.updated_at,
        },
    )
    connection.execute(statement, seals)


def check_rows(engine: Engine, rows: Sequence[StoredRow]) -> dict[int, str | None]:
    """Each row against its own link: "ok", "altered", "unlinked", or None if not yet chained.

    A quick look for one payment's events (the trace); `verify_chain` checks everything.
    """
    statuses: dict[int, str | None] = {}
    with engine.connect() as connection:
        head = tracked_position(connection, CHAIN_NAME)
        for row in rows:
            if row.id > head:
                statuses[row.id] = None
                continue
            link = connection.execute(
                select(audit_chain.c.link_sha256).where(audit_chain.c.position == row.id)
            ).scalar()
            previous = connection.execute(
                select(audit_chain.c.link_sha256)
                .where(audit_chain.c.position < row.id)
                .order_by(audit_chain.c.position.desc())
                .limit(1)
            ).scalar()
            if link is None:
                statuses[row.id] = "unlinked"
            else:
                expected = next_link(bytes.fromhex(previous or GENESIS_LINK), row).hex()
                statuses[row.id] = "ok" if expected == link else "altered"
    return statuses


# ---- seals -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seal:
    """The chain's head at the end of a UK business date: publish it outside the system."""

    business_date: date
    last_position: int
    link_sha256: str
    first_position: int | None = None
    events_count: int | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "chain": CHAIN_VERSION,
                "business_date": self.business_date.isoformat(),
                "first_position": self.first_position,
                "last_position": self.last_position,
                "events_count": self.events_count,
                "link_sha256": self.link_sha256,
            }
        )


def stored_seals(
    connection: Connection, *, since: date | None = None, before: date | None = None
) -> list[Seal]:
    """The seals in the database, oldest first; `before` leaves out days still open."""
    query = select(audit_seals).order_by(audit_seals.c.business_date)
    if since is not None:
        query = query.where(audit_seals.c.business_date >= since)
    if before is not None:
        query = query.where(audit_seals.c.business_date < before)
    return [
        Seal(
            row.business_date,
            int(row.last_position),
            row.link_sha256,
            int(row.first_position),
            int(row.events_count),
        )
        for row in connection.execute(query)
    ]


def read_seals(lines: Iterable[str], origin: str = "the seals file") -> list[Seal]:
    """Seals as exported by `income-ledger audit seals` (JSON lines); says what is wrong."""
    seals = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if data.get("chain", CHAIN_VERSION) != CHAIN_VERSION:
                raise ValueError(f"it is for chain {data['chain']!r}, not {CHAIN_VERSION!r}")
            link = str(data["link_sha256"]).lower()
            if len(link) != 64 or any(c not in "0123456789abcdef" for c in link):
                raise ValueError("link_sha256 is not 64 hex digits")
            seals.append(
                Seal(
                    date.fromisoformat(data["business_date"]),
                    int(data["last_position"]),
                    link,
                    data.get("first_position"),
                    data.get("events_count"),
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            problem = f"missing {error}" if isinstance(error, KeyError) else str(error)
            raise InvalidRequest(
                f"line {number} of {origin} is not a seal ({problem}); give the file "
                "written by `income-ledger audit seals --out FILE`"
            ) from None
    return seals


# ---- verifying -------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One place where the stored data and the chain (or a seal) disagree."""

    position: int
    kind: str  # altered | missing | unexpected | seal
    detail: str


@dataclass
class ChainReport:
    chain_position: int  # the chain's head: every event up to here is checked
    store_position: int  # the event store's last position
    events_checked: int = 0
    links_checked: int = 0
    head_link: str | None = None  # the recomputed link at the chain's head
    findings: list[Finding] = field(default_factory=list)  # the first MAX_FINDINGS
    findings_count: int = 0
    seals_checked: int = 0
    seal_findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.findings_count == 0 and not self.seal_findings

    @property
    def first_mismatch(self) -> Finding | None:
        """The first position where the stored events no longer match the chain."""
        return self.findings[0] if self.findings else None

    @property
    def unchained_after(self) -> int | None:
        """Events beyond the chain's head are not yet protected: where they start."""
        return self.chain_position if self.store_position > self.chain_position else None


def verify_chain(
    engine: Engine,
    source: RowSource,
    *,
    store_position: int,
    seals: Sequence[Seal] = (),
    page_size: int = 5000,
    progress: Callable[[int], None] | None = None,
    processes: int | None = 1,
    store: StoreAddress | None = None,
) -> ChainReport:
    """Recompute the chain from the stored rows and hold it against the chain and the seals.

    Read-only. Walks every stored row (from the lowest id, so that a row forged at position 0
    or below, where the chain never looks, is seen too) and the chain's links together in
    position order, up to the chain's head. A gap in positions is no finding (PostgreSQL leaves gaps); a linked
    position without its row is `missing`, a row among chained history without a link is
    `unexpected`, and a row that no longer hashes to its link is `altered`. Every seal given,
    and every seal in the database, must match the recomputed link at its position.

    Given the `store`'s address, the positions are split across up to `processes` worker
    processes (None: one per core; projections.segments): each range is checked from the
    stored link before it, and the ranges must join up (each one's recomputed head is the
    next one's starting link). Only when every range is clean is that the whole answer;
    otherwise the chain is walked again in this process, so that a report with findings
    (and the recomputed links after them) is exactly the sequential one.
    """
    with engine.connect() as connection:
        head = tracked_position(connection, CHAIN_NAME)
        all_seals = [(seal, "stored") for seal in stored_seals(connection)]
    all_seals += [(seal, "published") for seal in seals]
    report = ChainReport(chain_position=head, store_position=store_position)
    sealed_positions = frozenset(seal.last_position for seal, _ in all_seals)
    ranges = split(head, process_count(head, processes)) if store is not None else []
    walk = _walk_in_processes(engine, store, ranges, head, sealed_positions, page_size)
    if walk is not None and progress is not None:
        progress(head)
    if walk is None:
        rows = _rows_up_to(source, None, head, page_size, progress)
        links = _links_up_to(engine, 0, head, page_size)
        walk = _walk(rows, links, bytes.fromhex(GENESIS_LINK), sealed_positions)
    report.events_checked = walk.events_checked
    report.links_checked = walk.links_checked
    report.findings = walk.findings
    report.findings_count = walk.findings_count
    if head:
        report.head_link = walk.recomputed.hex()
    report.seal_findings = _check_seals(all_seals, walk.recomputed_at, head)
    report.seals_checked = len(all_seals)
    return report


@dataclass
class _Walk:
    """What walking one range of rows and links found; ranges in order add up."""

    recomputed: bytes  # the recomputed link so far
    events_checked: int = 0
    links_checked: int = 0
    findings: list[Finding] = field(default_factory=list)  # the first MAX_FINDINGS
    findings_count: int = 0
    recomputed_at: dict[int, str] = field(default_factory=dict)  # at sealed positions

    def add(self, finding: Finding) -> None:
        self.findings_count += 1
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(finding)


def _walk(
    rows: Iterator[StoredRow],
    links: Iterator[tuple[int, bytes]],
    start: bytes,
    sealed_positions: frozenset[int],
) -> _Walk:
    """Rows and links merged in position order, from the link `start` before them."""
    walk = _Walk(recomputed=start)
    recomputed = stored_previous = start
    row, linked = next(rows, None), next(links, None)
    while row is not None or linked is not None:
        if linked is None or (row is not None and row.id < linked[0]):
            assert row is not None
            recomputed = next_link(recomputed, row)
            walk.events_checked += 1
            walk.add(Finding(row.id, "unexpected", _UNEXPECTED))
            position = row.id
            row = next(rows, None)
        elif row is None or linked[0] < row.id:
            walk.links_checked += 1
            walk.add(Finding(linked[0], "missing", _MISSING))
            stored_previous = linked[1]
            position = linked[0]
            linked = next(links, None)
        else:
            encoding = canonical_row(row)
            # Until the first finding the stored and recomputed chains are the same, so
            # the row's own check needs no second hash.
            same_so_far = recomputed == stored_previous
            recomputed = _sha256(recomputed + encoding)
            own = recomputed if same_so_far else _sha256(stored_previous + encoding)
            walk.events_checked += 1
            walk.links_checked += 1
            if own != linked[1]:
                walk.add(Finding(row.id, "altered", _ALTERED))
            stored_previous = linked[1]
            position = row.id
            row, linked = next(rows, None), next(links, None)
        if position in sealed_positions:
            walk.recomputed_at[position] = recomputed.hex()
    walk.recomputed = recomputed
    return walk


def _walk_in_processes(
    engine: Engine,
    store: StoreAddress | None,
    ranges: list[tuple[int, int | None]],
    head: int,
    sealed_positions: frozenset[int],
    page_size: int,
) -> _Walk | None:
    """The ranges walked in worker processes and joined, or None if there is only one
    range, or if any range found something or the ranges do not join up."""
    if store is None or len(ranges) < 2:
        return None
    with engine.connect() as connection:
        starts = [_stored_link_at_or_before(connection, after) for after, _ in ranges]
    parts = run_in_processes(
        _walk_range,
        [
            (store, None if index == 0 else after, stop or head, start, sealed_positions, page_size)
            for index, ((after, stop), start) in enumerate(zip(ranges, starts, strict=True))
        ],
    )
    joined = all(
        part.recomputed == start for part, start in zip(parts[:-1], starts[1:], strict=True)
    )
    if not joined or any(part.findings_count for part in parts):
        return None
    whole = _Walk(recomputed=parts[-1].recomputed)
    for part in parts:
        whole.events_checked += part.events_checked
        whole.links_checked += part.links_checked
        whole.recomputed_at.update(part.recomputed_at)
    return whole


def _walk_range(
    store: StoreAddress,
    after: int | None,
    stop: int,
    start: bytes,
    sealed_positions: frozenset[int],
    page_size: int,
) -> _Walk:
    """One worker's range (after, stop]: its own engine, the rows read with the bare driver."""
    engine = create_engine(store.url)
    try:
        rows = _rows_up_to(EventReader(engine, store.table).text_rows, after, stop, page_size, None)
        links = _links_up_to(engine, after or 0, stop, page_size)
        return _walk(rows, links, start, sealed_positions)
    finally:
        engine.dispose()


def _stored_link_at_or_before(connection: Connection, position: int) -> bytes:
    """The chain's stored link at the last position up to `position` (genesis before any)."""
    link = connection.execute(
        select(audit_chain.c.link_sha256)
        .where(audit_chain.c.position <= position)
        .order_by(audit_chain.c.position.desc())
        .limit(1)
    ).scalar()
    return bytes.fromhex(link or GENESIS_LINK)


_ALTERED = "the stored event no longer hashes to its chain link: the row (or its link) was altered"
_MISSING = "the chain links an event that is no longer stored: the row was deleted"
_UNEXPECTED = (
    "an event row among chained history has no chain link: it was inserted by hand "
    "(or its link was deleted)"
)


def _rows_up_to(
    source: RowSource,
    after: int | None,
    head: int,
    page_size: int,
    progress: Callable[[int], None] | None,
) -> Iterator[StoredRow]:
    """Rows after `after` (None: from the lowest id in the table) up to `head`."""
    while after is None or after < head:
        page = source(after, page_size)
        for row in page:
            if row.id > head:
                return
            yield row
        if progress is not None and page:
            progress(max(0, min(page[-1].id, head) - max(after or 0, 0)))
        if len(page) < page_size:
            return
        after = page[-1].id


def _links_up_to(
    engine: Engine, after: int, head: int, page_size: int
) -> Iterator[tuple[int, bytes]]:
    mark = placeholder(engine)
    # Bounded on one side only, so that PostgreSQL reads the primary key in order even
    # before it has statistics on a freshly filled table (a two-sided range then looks
    # small and is planned as a bitmap scan and a sort of everything above `after`). Read
    # with the bare driver: SQLAlchemy's Row objects were a sixth of verify's time.
    sql = (
        f"SELECT position, link_sha256 FROM {audit_chain.name} WHERE position > {mark} "
        f"ORDER BY position LIMIT {mark}"
    )
    while after < head:
        page = fetch_all(engine, sql, (after, page_size))
        for position, link in page:
            if position > head:
                return
            yield int(position), bytes.fromhex(link)
        if len(page) < page_size:
            return
        after = int(page[-1][0])


def _check_seals(
    seals: Sequence[tuple[Seal, str]], recomputed_at: dict[int, str], head: int
) -> list[Finding]:
    """Each (seal, where it came from) against the recomputed chain, oldest first; says
    between which positions history changed."""
    findings = []
    matched_up_to = 0
    for seal, origin in sorted(seals, key=lambda s: (s[0].last_position, s[1])):
        what = f"the {origin} seal of {seal.business_date.isoformat()}"
        position = seal.last_position
        if position > head:
            detail = (
                f"{what} covers position {position}, beyond the chain's head {head}: chained "
                "history was removed, or the seal is from another ledger"
            )
        elif position not in recomputed_at:
            detail = f"{what} ends at position {position}, but no event is stored there"
        elif recomputed_at[position] != seal.link_sha256:
            detail = (
                f"{what} does not match the events stored now: something after position "
                f"{matched_up_to} and at or before {position} was changed"
            )
        else:
            matched_up_to = max(matched_up_to, position)
            continue
        findings.append(Finding(position, "seal", detail))
    return findings
