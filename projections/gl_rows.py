"""The read model's postings a general-ledger export is made from (application/gl_export.py)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import or_, select
from sqlalchemy.engine import Engine

from domain.gl_export import PostingRow
from projections.runner import tracked_position
from projections.schema import LIVE


class ReadModelPostings:
    """Postings rows as the export needs them, read from the live read model."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def position(self) -> int:
        with self.engine.connect() as connection:
            return tracked_position(connection)

    def rows(self, day: date, after_position: int, upto_position: int) -> list[PostingRow]:
        """The day's postings up to `upto_position`, and every other day's recorded after
        `after_position` up to there (candidates for adjustment lines)."""
        table = LIVE.postings
        query = (
            select(
                table.c.account,
                table.c.fund_code,
                table.c.channel,
                table.c.amount_pence,
                table.c.effective_date,
            )
            .where(
                table.c.position <= upto_position,
                or_(table.c.effective_date == day, table.c.position > after_position),
            )
            .order_by(table.c.posting_id)
        )
        with self.engine.connect() as connection:
            return [
                PostingRow(r.account, r.fund_code, r.channel, int(r.amount_pence), r.effective_date)
                for r in connection.execute(query)
            ]
