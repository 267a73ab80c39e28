"""Outbox writer: domain events become `domain_events` rows inside the caller's transaction.

Nothing is published here; the relay (workers/) reads committed rows later (PEC 9).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.shared.events import DomainEvent
from persistence.tables import domain_events

_INSERT_EVENT = insert(domain_events)


def bounded_context(event: DomainEvent) -> str:
    """The domain package the event is defined in: payments, wallet, user, ..."""
    parts = type(event).__module__.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "domain" else "shared"


def stream_for(event: DomainEvent) -> str:
    """One stream per bounded context."""
    return f"penpay.{bounded_context(event)}"


def event_row(event: DomainEvent, actor: str) -> dict[str, Any]:
    return {
        "id": event.event_id.value,
        "stream": stream_for(event),
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id(),
        "aggregate_version": event.aggregate_version(),
        "event_type": event.event_type,
        "payload": json.dumps(event.payload(), separators=(",", ":"), sort_keys=True),
        "occurred_at": event.occurred_at,
        "published_at": None,
        "publish_attempts": 0,
        "actor": actor,
    }


async def write_events(connection: AsyncConnection, events: Sequence[DomainEvent], actor: str) -> None:
    """The events' outbox rows. Those of financial events are audited by the database (migration
    0028's trigger copies each into audit_pending, with `actor`, in the same statement)."""
    if events:
        await connection.execute(_INSERT_EVENT, [event_row(e, actor) for e in events])
