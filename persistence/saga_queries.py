"""Read queries of the sweeper: transactions that have been waiting in one state too long."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.payments.status import TransactionStatus
from domain.shared.ids import TransactionId
from persistence.tables import transactions

# Waiting states the saga drives on its own. NEEDS_REVIEW waits for a person; terminal ones are done.
SWEPT_STATUSES = tuple(
    s.value for s in TransactionStatus if not s.is_terminal and s is not TransactionStatus.NEEDS_REVIEW
)


async def stale_transaction_ids(
    engine: AsyncEngine, *, untouched_since: datetime, limit: int = 200
) -> list[TransactionId]:
    """Oldest first: uses the (status, updated_at) index."""
    query = (
        select(transactions.c.id)
        .where(transactions.c.status.in_(SWEPT_STATUSES), transactions.c.updated_at < untouched_since)
        .order_by(transactions.c.updated_at)
        .limit(limit)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).scalars().all()
    return [TransactionId(row) for row in rows]
