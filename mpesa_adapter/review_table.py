"""`mpesa_callback_reviews`: callbacks that must never be acted on automatically, kept for a person.

The table lives with the rest of the schema (persistence.tables, migration 0003).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.tables import mpesa_callback_reviews

__all__ = ["ReviewTally", "mpesa_callback_reviews", "review_tally"]


@dataclass(frozen=True, slots=True)
class ReviewTally:
    """How many answers were kept for review under a payout (or a query's own id), and the newest."""

    count: int
    reason: str = ""
    detail: str = ""

    def describe(self) -> str:
        return f"{self.reason}: {self.detail}" if self.reason else ""


async def review_tally(engine: AsyncEngine, ocid: str, query: str | None) -> ReviewTally:
    """Read before and after a Transaction Status question: a higher count means M-Pesa answered
    and the answer was refused (the newest row says why)."""
    t = mpesa_callback_reviews
    ids = [ocid] if query is None else [ocid, query]
    where = or_(*(t.c.correlation_id == i for i in ids))
    async with engine.connect() as conn:
        count = (await conn.execute(select(func.count()).where(where))).scalar_one()
        newest = (
            await conn.execute(select(t.c.reason, t.c.detail).where(where).order_by(t.c.id.desc()).limit(1))
        ).first()
    if newest is None:
        return ReviewTally(int(count))
    return ReviewTally(int(count), str(newest.reason), str(newest.detail or ""))
