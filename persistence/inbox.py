"""Consumer inbox (`processed_events`): effectively-once handling of at-least-once messages.

A consumer records (consumer, event id) in the same transaction as its effect. The primary
key makes the second delivery of an event fail to insert, and the consumer then skips it. On
MariaDB a concurrent duplicate waits on the first one's key lock and, once that commits,
fails the insert; if the first rolls back, the duplicate goes ahead. Either way the effect
happens once.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, exists, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.tables import processed_events

_INSERT = insert(processed_events)
_t = processed_events


async def record_processed(
    connection: AsyncConnection, consumer: str, event_id: uuid.UUID, now: datetime
) -> bool:
    """Insert the inbox row; False when this consumer has already processed the event.

    Call inside the transaction that carries the effect, before the effect. A False result
    leaves that transaction usable (the failed statement alone is undone); roll it back.
    """
    try:
        await connection.execute(_INSERT, {"consumer": consumer, "event_id": event_id, "processed_at": now})
    except IntegrityError:
        return False
    return True


async def was_processed(connection: AsyncConnection, consumer: str, event_id: uuid.UUID) -> bool:
    statement = select(exists().where(_t.c.consumer == consumer, _t.c.event_id == event_id))
    return bool((await connection.execute(statement)).scalar())


async def forget(connection: AsyncConnection, consumer: str, event_id: uuid.UUID) -> None:
    """Take back the inbox row this transaction inserted: the event is to come back and be handled
    again (workers.consumer.KeepAndRetry)."""
    await connection.execute(delete(_t).where(_t.c.consumer == consumer, _t.c.event_id == event_id))
