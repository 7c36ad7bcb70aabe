"""The figures the business watches, read from the read model at each metrics scrape.

Read from the database rather than counted by the process that recorded them, so every API
worker (and every host) reports the same figures, commands run from the CLI or imports
included, and a restart loses nothing. Each figure is one aggregate query over a table that
stays small however long the ledger runs: `channel_totals` has a row per channel, and
`suspense_items` holds only the open items; `import_batches` grows by one row per file
(a few a day), so its two counts stay cheap for decades.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import and_, case, func, select, true
from sqlalchemy.engine import Connection

from projections.schema import LIVE

# (label, oldest age in days of the band); an item's age is today minus its received date.
AGE_BANDS: tuple[tuple[str, int], ...] = (("0-7", 0), ("8-30", 8), ("31-90", 31), ("91+", 91))


@dataclass(frozen=True)
class ChannelFigures:
    channel: str
    receipts_count: int
    received_pence: int
    refunds_pence: int
    reversals_pence: int


@dataclass(frozen=True)
class SuspenseBand:
    age_days: str
    items_count: int
    amount_pence: int


@dataclass(frozen=True)
class BusinessFigures:
    channels: tuple[ChannelFigures, ...]
    suspense: tuple[SuspenseBand, ...]
    imported_files_count: int
    reversed_files_count: int


def business_figures(connection: Connection, today: date) -> BusinessFigures:
    """Money by channel, open suspense by age band, and imported files, as of now."""
    imported, reversed_ = _import_counts(connection)
    return BusinessFigures(
        channels=_channels(connection),
        suspense=suspense_by_age(connection, today),
        imported_files_count=imported,
        reversed_files_count=reversed_,
    )


def _channels(connection: Connection) -> tuple[ChannelFigures, ...]:
    table = LIVE.channel_totals
    rows = connection.execute(
        select(
            table.c.channel,
            table.c.receipts_count,
            table.c.received_pence,
            table.c.refunds_pence,
            table.c.reversals_pence,
        ).order_by(table.c.channel)
    )
    return tuple(ChannelFigures(*(row[0], *(int(v) for v in row[1:]))) for row in rows)


def suspense_by_age(connection: Connection, today: date) -> tuple[SuspenseBand, ...]:
    """One pass over the open items, summing each band with a conditional aggregate (the
    metrics and the web dashboard)."""
    table = LIVE.suspense_items
    bounds = [today - timedelta(days=oldest) for _, oldest in AGE_BANDS[1:]]
    columns = []
    for index in range(len(AGE_BANDS)):
        in_band = [table.c.received_date <= bounds[index - 1]] if index else []
        if index < len(bounds):
            in_band.append(table.c.received_date > bounds[index])
        band = and_(true(), *in_band)
        columns += [
            func.coalesce(func.sum(case((band, 1), else_=0)), 0),
            func.coalesce(func.sum(case((band, table.c.amount_pence), else_=0)), 0),
        ]
    row = connection.execute(select(*columns)).one()
    return tuple(
        SuspenseBand(label, int(row[2 * i]), int(row[2 * i + 1]))
        for i, (label, _) in enumerate(AGE_BANDS)
    )


def _import_counts(connection: Connection) -> tuple[int, int]:
    table = LIVE.import_batches
    imported, reversed_ = connection.execute(
        select(func.count(), func.count(table.c.reversed_at))
    ).one()
    return int(imported), int(reversed_)
