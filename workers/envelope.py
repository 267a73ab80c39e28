"""EventEnvelope: a domain event as it travels on the bus (flat string fields)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from persistence.outbox_reader import PendingEvent

FIELDS = (
    "event_id",
    "event_type",
    "aggregate_type",
    "aggregate_id",
    "aggregate_version",
    "occurred_at",
    "payload",
)


class MalformedMessage(ValueError):
    """A bus message that is not an event envelope (it is dead-lettered at once)."""


@dataclass(frozen=True, slots=True)
class EventEnvelope:
    event_id: uuid.UUID
    event_type: str
    aggregate_type: str
    aggregate_id: str
    # The aggregate's version after the event; handlers compare it with the stored version
    # and ignore stale or out-of-order events. None for unversioned aggregates.
    aggregate_version: int | None
    occurred_at: datetime
    payload: str  # JSON text, exactly as stored in the outbox

    @classmethod
    def from_pending(cls, row: PendingEvent) -> EventEnvelope:
        return cls(
            event_id=row.id,
            event_type=row.event_type,
            aggregate_type=row.aggregate_type,
            aggregate_id=row.aggregate_id,
            aggregate_version=row.aggregate_version,
            occurred_at=row.occurred_at,
            payload=row.payload,
        )

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> EventEnvelope:
        try:
            version = fields["aggregate_version"]
            return cls(
                event_id=uuid.UUID(fields["event_id"]),
                event_type=fields["event_type"],
                aggregate_type=fields["aggregate_type"],
                aggregate_id=fields["aggregate_id"],
                aggregate_version=int(version) if version != "" else None,
                occurred_at=datetime.fromisoformat(fields["occurred_at"]),
                payload=fields["payload"],
            )
        except (KeyError, ValueError) as exc:
            raise MalformedMessage(f"not an event envelope: {type(exc).__name__} {exc}") from None

    def to_fields(self) -> dict[str, str]:
        return {
            "event_id": str(self.event_id),
            "event_type": self.event_type,
            "aggregate_type": self.aggregate_type,
            "aggregate_id": self.aggregate_id,
            "aggregate_version": "" if self.aggregate_version is None else str(self.aggregate_version),
            "occurred_at": self.occurred_at.isoformat(),
            "payload": self.payload,
        }

    def data(self) -> dict[str, Any]:
        """The payload, parsed."""
        parsed: dict[str, Any] = json.loads(self.payload)
        return parsed

    def log_context(self) -> dict[str, str]:
        """What may be logged about the event: ids and types, never the payload."""
        return {
            "event_id": str(self.event_id),
            "event_type": self.event_type,
            "aggregate_type": self.aggregate_type,
            "aggregate_id": self.aggregate_id,
        }
