"""Read queries of the sweeper: transactions that have been waiting in one state too long."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.payments.attachments import EvidenceStatus
from domain.payments.status import TransactionStatus, TransactionType
from domain.shared.ids import TransactionId
from persistence.tables import mpesa_disbursements, transactions

# Waiting states the saga drives on its own. NEEDS_REVIEW waits for a person; terminal ones are done.
SWEPT_STATUSES = tuple(
    s.value for s in TransactionStatus if not s.is_terminal and s is not TransactionStatus.NEEDS_REVIEW
)


# A deposit under review whose refund two people approved: the saga pays it (until it is paid,
# or M-Pesa's refusal hands it back to a person: evidence REVIEW).
_REFUND_IN_FLIGHT = and_(
    transactions.c.status == TransactionStatus.NEEDS_REVIEW.value,
    transactions.c.type == TransactionType.DEPOSIT.value,
    select(mpesa_disbursements.c.transaction_id)
    .where(
        mpesa_disbursements.c.transaction_id == transactions.c.id,
        mpesa_disbursements.c.status != EvidenceStatus.REVIEW.value,
    )
    .exists(),
)


# What is in flight, for the operators: the swept states and the ones waiting for a person.
IN_FLIGHT_STATUSES = (*SWEPT_STATUSES, TransactionStatus.NEEDS_REVIEW.value)


@dataclass(frozen=True, slots=True)
class InFlight:
    """How many transactions of one type wait in one status, and since when the oldest exists."""

    type: str
    status: str
    count: int
    oldest_created_at: datetime


async def in_flight(engine: AsyncEngine) -> list[InFlight]:
    """One grouped read over the in-flight transactions (few, next to the terminal ones)."""
    t = transactions.c
    query = (
        select(t.type, t.status, func.count(), func.min(t.created_at))
        .where(t.status.in_(IN_FLIGHT_STATUSES))
        .group_by(t.type, t.status)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    # MIN() takes its argument's type: the UtcDateTime column's aware datetime, on either database
    return [InFlight(type_, status, count, oldest) for type_, status, count, oldest in rows]


@dataclass(frozen=True, slots=True)
class SweepPosition:
    """Where a sweep stopped: the next one starts after this (updated_at, id)."""

    updated_at: datetime
    transaction_id: TransactionId


async def stale_transaction_ids(
    engine: AsyncEngine,
    *,
    untouched_since: datetime,
    limit: int = 200,
    after: SweepPosition | None = None,
    now: datetime | None = None,
    quiet_since: datetime | None = None,
    unclaimed_since: datetime | None = None,
) -> tuple[list[tuple[TransactionId, datetime]], SweepPosition | None]:
    """(id, updated_at), oldest first, from `after` on (the (status, updated_at) index); with the
    position to carry on from, or None when this page reached the end. Without the position every
    sweep would re-read the same oldest `limit` rows: withdrawals waiting an hour for their code
    would starve the rest. With `now`, a transaction whose saga said it has nothing to do before a
    later time (saga_due_at) is left out, unless untouched since `quiet_since`; and with
    `unclaimed_since`, one saved without the saga's word (saga_due_at NULL) is left to its owner
    until untouched since then: the event that save wrote wakes the saga, or the advance that
    saved it goes on from it, so only a lost event or a crashed worker leaves it to the sweeper."""
    t = transactions.c
    query = (
        select(t.id, t.updated_at)
        .where(or_(t.status.in_(SWEPT_STATUSES), _REFUND_IN_FLIGHT), t.updated_at < untouched_since)
        .order_by(t.updated_at, t.id)
        .limit(limit)
    )
    if now is not None:
        unowned: ColumnElement[bool] = t.saga_due_at.is_(None)
        if unclaimed_since is not None:
            unowned = and_(unowned, t.updated_at < unclaimed_since)
        due = or_(unowned, t.saga_due_at <= now)
        query = query.where(due if quiet_since is None else or_(due, t.updated_at < quiet_since))
    if after is not None:
        query = query.where(
            or_(
                t.updated_at > after.updated_at,
                and_(t.updated_at == after.updated_at, t.id > after.transaction_id.value),
            )
        )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    found = [(TransactionId(row.id), row.updated_at) for row in rows]
    if len(rows) < limit:
        return found, None
    return found, SweepPosition(rows[-1].updated_at, found[-1][0])
