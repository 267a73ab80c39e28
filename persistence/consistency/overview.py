"""The transactions at a glance: counts by type and status, the NEEDS_REVIEW ones with their
failure_reason (not errors), and as `unresolved` those in any other non-terminal status created
before now - stale_after.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.payments.status import TransactionStatus as S
from persistence.consistency.collector import Collector
from persistence.consistency.queries import TERMINAL
from persistence.consistency.report import ReviewItem, UnresolvedTransaction
from persistence.tables import transactions as _t


async def list_transactions(
    connection: AsyncConnection, out: Collector, *, now: datetime, stale_after: timedelta
) -> None:
    counts = await connection.execute(
        select(_t.c.type, _t.c.status, func.count()).group_by(_t.c.type, _t.c.status)
    )
    for type_, status, count in counts:
        out.report.counts_by_status[status] = out.report.counts_by_status.get(status, 0) + int(count)
        out.report.counts_by_type.setdefault(type_, {})[status] = int(count)

    review = (
        select(_t.c.id, _t.c.failure_reason)
        .where(_t.c.status == S.NEEDS_REVIEW.value)
        .order_by(_t.c.updated_at, _t.c.id)
    )
    for tx_id, reason in await out.rows(connection, review, "transactions in NEEDS_REVIEW"):
        out.report.needs_review.append(ReviewItem(str(tx_id), reason))

    cutoff = now - stale_after
    stale = (
        select(_t.c.id, _t.c.type, _t.c.status, _t.c.created_at, _t.c.updated_at, _t.c.failure_reason)
        .where(_t.c.status.not_in([*TERMINAL, S.NEEDS_REVIEW.value]), _t.c.created_at < cutoff)
        .order_by(_t.c.created_at, _t.c.id)
    )
    for row in await out.rows(connection, stale, "unresolved transactions"):
        out.report.unresolved.append(
            UnresolvedTransaction(
                transaction_id=str(row.id),
                type=row.type,
                status=row.status,
                created_at=row.created_at,
                updated_at=row.updated_at,
                failure_reason=row.failure_reason,
            )
        )
