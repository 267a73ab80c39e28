"""The DomainEvent base: what an aggregate records and the outbox stores (PEC 9)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from fractions import Fraction
from typing import ClassVar

from domain.shared.clock import require_utc, utc_now
from domain.shared.ids import EntityId, EventId
from domain.shared.json_value import JSONValue

# Envelope fields live in their own outbox columns, so they are left out of payload().
_ENVELOPE_FIELDS = frozenset({"event_id", "occurred_at"})


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainEvent:
    aggregate_type: ClassVar[str] = ""
    # Set to the class name for every subclass; stable, so renaming an event is breaking.
    event_type: ClassVar[str] = "DomainEvent"

    event_id: EventId = field(default_factory=EventId.new)
    occurred_at: datetime = field(default_factory=utc_now)

    def __init_subclass__(cls) -> None:
        # No zero-argument super() here: slots dataclasses are re-created, which breaks it.
        cls.event_type = cls.__name__

    def __post_init__(self) -> None:
        object.__setattr__(self, "occurred_at", require_utc(self.occurred_at, "occurred_at"))

    def aggregate_id(self) -> str:
        raise NotImplementedError(f"{type(self).__name__} must say which aggregate it belongs to")

    def aggregate_version(self) -> int | None:
        """The aggregate's version after this event, when the aggregate is versioned."""
        return None

    def payload(self) -> dict[str, JSONValue]:
        return {
            f.name: to_json_value(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in _ENVELOPE_FIELDS
        }


def to_json_value(value: object) -> JSONValue:
    """Turn a domain value into JSON-safe data; floats are refused, never passed through."""
    if isinstance(value, Enum):
        return to_json_value(value.value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, EntityId):
        return str(value)
    if isinstance(value, datetime):
        return require_utc(value).isoformat()
    if isinstance(value, Fraction):
        return str(value)  # "n/d": exact
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        result: JSONValue = to_json()
        return result
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [to_json_value(v) for v in value]
    raise TypeError(f"{type(value).__name__} has no JSON form")
