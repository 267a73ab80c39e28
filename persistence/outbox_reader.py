"""Outbox reader: the relay's SQL over `domain_events` (the writer is persistence.outbox).

The relay never polls by "id greater than the last one seen": ids (and occurred_at) are
assigned when a row is inserted, not when its transaction commits, so a row committed late
would sort before rows already relayed and be skipped for ever. Instead every pass claims
whatever is still unpublished:

    SELECT ... WHERE published_at IS NULL ORDER BY occurred_at, id LIMIT n
    FOR UPDATE SKIP LOCKED

On MariaDB the claimed rows stay locked until the relay's transaction ends, so concurrent
relays take disjoint batches, and rows of transactions still in flight (locked by their
writer) are skipped until they commit. On SQLite `FOR UPDATE` renders nothing; the engine's
BEGIN IMMEDIATE takes the database write lock, which serialises relays instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.tables import domain_events

_t = domain_events

_CLAIM = (
    select(
        _t.c.id,
        _t.c.stream,
        _t.c.aggregate_type,
        _t.c.aggregate_id,
        _t.c.aggregate_version,
        _t.c.event_type,
        _t.c.payload,
        _t.c.occurred_at,
        _t.c.publish_attempts,
    )
    .where(_t.c.published_at.is_(None))
    .order_by(_t.c.occurred_at, _t.c.id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)

_MARK_PUBLISHED = (
    update(_t)
    .where(_t.c.id.in_(bindparam("ids", expanding=True)))
    .values(published_at=bindparam("now"), publish_attempts=_t.c.publish_attempts + 1)
)

_COUNT_ATTEMPT = (
    update(_t)
    .where(_t.c.id.in_(bindparam("ids", expanding=True)))
    .values(publish_attempts=_t.c.publish_attempts + 1)
)


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """A committed, not yet published outbox row."""

    id: uuid.UUID
    stream: str
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int | None
    event_type: str
    payload: str
    occurred_at: datetime
    publish_attempts: int


async def claim_pending(connection: AsyncConnection, limit: int) -> list[PendingEvent]:
    """Lock and return up to `limit` unpublished rows, oldest first, skipping rows others lock.

    Call inside a transaction and keep it open until the rows are published and marked.
    """
    result = await connection.execute(_CLAIM, {"limit": limit})
    return [PendingEvent(**row._asdict()) for row in result]


async def mark_published(connection: AsyncConnection, ids: Sequence[uuid.UUID], now: datetime) -> None:
    if ids:
        await connection.execute(_MARK_PUBLISHED, {"ids": list(ids), "now": now})


async def count_failed_attempt(connection: AsyncConnection, ids: Sequence[uuid.UUID]) -> None:
    """The bus refused the batch: the rows stay pending, their attempt counter goes up."""
    if ids:
        await connection.execute(_COUNT_ATTEMPT, {"ids": list(ids)})
