"""UUIDv7 generation (RFC 9562) and the typed identifiers built on it.

Why UUIDv7: time-ordered ids keep B-tree indexes append-only (PEC 3.4.2).
Why typed ids: a UserId can never be passed where a TransactionId is expected.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Self

from domain.shared.errors import InvalidIdentifier

_RANDOM_BITS = 74  # rand_a (12) + rand_b (62)
_RANDOM_LIMIT = 1 << _RANDOM_BITS
_lock = threading.Lock()
_last_ms = 0
_last_random = 0


def _next_timestamp_and_random() -> tuple[int, int]:
    """Monotonic within the process (RFC 9562 6.2, method 2, random increment).

    Within one millisecond, or if the wall clock steps back, the 74 random bits are
    incremented by a random amount instead of redrawn, so ids still sort in creation
    order; on overflow the timestamp is borrowed forward by one millisecond.
    """
    global _last_ms, _last_random
    now_ms = time.time_ns() // 1_000_000
    with _lock:
        if now_ms > _last_ms:
            # Fresh draw with the top bit clear leaves headroom for increments.
            _last_ms, _last_random = now_ms, secrets.randbits(_RANDOM_BITS - 1)
        else:
            _last_random += secrets.randbits(32) + 1
            if _last_random >= _RANDOM_LIMIT:
                _last_ms, _last_random = _last_ms + 1, secrets.randbits(_RANDOM_BITS - 1)
        return _last_ms, _last_random


def new_uuid7() -> uuid.UUID:
    unix_ms, random74 = _next_timestamp_and_random()
    rand_a = random74 >> 62
    rand_b = random74 & ((1 << 62) - 1)
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= rand_a << 64
    value |= 0b10 << 62  # RFC 9562 variant
    value |= rand_b
    return uuid.UUID(int=value)


def uuid7_unix_ms(value: uuid.UUID) -> int:
    """The millisecond timestamp embedded in a UUIDv7."""
    return value.int >> 80


@dataclass(frozen=True, slots=True)
class EntityId:
    """Base of typed ids. Any UUID is accepted (ids come back from storage); new() makes v7."""

    value: uuid.UUID

    def __post_init__(self) -> None:
        if not isinstance(self.value, uuid.UUID):
            raise InvalidIdentifier(f"{type(self).__name__} needs a UUID, got {type(self.value).__name__}")

    @classmethod
    def new(cls) -> Self:
        return cls(new_uuid7())

    @classmethod
    def from_str(cls, text: str, *, field: str | None = None) -> Self:
        try:
            return cls(uuid.UUID(text))
        except (ValueError, TypeError, AttributeError) as exc:
            raise InvalidIdentifier(f"not a valid {cls.__name__}", field=field) from exc

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True, slots=True)
class UserId(EntityId):
    pass


@dataclass(frozen=True, slots=True)
class TransactionId(EntityId):
    pass


@dataclass(frozen=True, slots=True)
class LedgerAccountId(EntityId):
    pass


@dataclass(frozen=True, slots=True)
class LedgerEntryId(EntityId):
    pass


@dataclass(frozen=True, slots=True)
class PostingId(EntityId):
    pass


@dataclass(frozen=True, slots=True)
class EventId(EntityId):
    pass


@dataclass(frozen=True, slots=True)
class DeviceId(EntityId):
    pass
