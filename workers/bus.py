"""The MessageBus port: streams, consumer groups, acknowledgement, dead letters.

Semantics (Redis Streams'; the in-process adapter mimics them):

- `publish` appends messages to streams (at-least-once; each message carries its event id).
- A consumer group created with `ensure_group` starts at the beginning of the stream (id 0)
  and delivers each message to one consumer of the group (`read`). A delivered message stays
  pending in the group until `ack`.
- `claim_stale` hands the group's messages pending for longer than `min_idle_ms` (their
  consumer died, or its handler failed) to another consumer; each claim counts a delivery.
- `dead_letter` moves a message to `<stream>.dead` with the error and acks it, atomically.
  `replay_dead` puts a dead letter back on its original stream (as a new message, seen by
  every group of that stream; groups that had processed it skip it through their inbox).

Stream names here are logical ("penpay.payments"); an adapter may add a key prefix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

DEAD_SUFFIX = ".dead"
# Fields a dead letter carries besides the original message's fields.
DL_PREFIX = "dl_"
DL_STREAM, DL_ID, DL_GROUP, DL_CONSUMER, DL_ERROR, DL_DELIVERIES, DL_AT = (
    f"{DL_PREFIX}{name}"
    for name in ("stream", "original_id", "group", "consumer", "error", "deliveries", "dead_at")
)
MAX_ERROR_LENGTH = 500


def dead_stream(stream: str) -> str:
    return f"{stream}{DEAD_SUFFIX}"


@dataclass(frozen=True, slots=True)
class Delivery:
    stream: str  # logical name
    message_id: str
    fields: Mapping[str, str]
    delivery_count: int  # 1 on first delivery; every claim adds one


@dataclass(frozen=True, slots=True)
class DeadLetter:
    stream: str  # the original (logical) stream
    dead_id: str  # id in `<stream>.dead`
    original_id: str
    group: str
    consumer: str
    error: str
    deliveries: int
    dead_at: str
    fields: Mapping[str, str]  # the original message

    @classmethod
    def from_fields(cls, stream: str, dead_id: str, fields: Mapping[str, str]) -> DeadLetter:
        return cls(
            stream=fields.get(DL_STREAM, stream),
            dead_id=dead_id,
            original_id=fields.get(DL_ID, ""),
            group=fields.get(DL_GROUP, ""),
            consumer=fields.get(DL_CONSUMER, ""),
            error=fields.get(DL_ERROR, ""),
            deliveries=int(fields.get(DL_DELIVERIES, "0") or 0),
            dead_at=fields.get(DL_AT, ""),
            fields={k: v for k, v in fields.items() if not k.startswith(DL_PREFIX)},
        )


def dead_letter_fields(
    delivery: Delivery, *, group: str, consumer: str, error: str, dead_at: str
) -> dict[str, str]:
    return {
        **{k: v for k, v in delivery.fields.items() if not k.startswith(DL_PREFIX)},
        DL_STREAM: delivery.stream,
        DL_ID: delivery.message_id,
        DL_GROUP: group,
        DL_CONSUMER: consumer,
        DL_ERROR: error[:MAX_ERROR_LENGTH],
        DL_DELIVERIES: str(delivery.delivery_count),
        DL_AT: dead_at,
    }


class MessageBus(Protocol):
    async def publish(self, messages: Sequence[tuple[str, Mapping[str, str]]]) -> list[str]:
        """Append (stream, fields) messages; returns their ids. All or an exception."""
        ...

    async def ensure_group(self, stream: str, group: str) -> None: ...

    async def read(
        self, streams: Sequence[str], group: str, consumer: str, *, count: int, block_ms: int
    ) -> list[Delivery]:
        """New messages for the group, waiting up to block_ms when there are none."""
        ...

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int
    ) -> list[Delivery]: ...

    async def ack(self, stream: str, group: str, *message_ids: str) -> None:
        """Acknowledge messages of one stream (one round trip for a consumer's whole batch)."""
        ...

    async def pending_count(self, stream: str, group: str) -> int: ...

    async def dead_letter(self, delivery: Delivery, *, group: str, consumer: str, error: str) -> str:
        """Add to `<stream>.dead` and ack the original, atomically; returns the dead id."""
        ...

    async def dead_letter_streams(self) -> list[str]:
        """Logical names of the original streams that have a dead-letter stream."""
        ...

    async def list_dead(self, stream: str, *, count: int = 100) -> list[DeadLetter]: ...

    async def replay_dead(self, stream: str, dead_id: str) -> str | None:
        """Re-add a dead letter to its original stream and delete it; the new id, or None."""
        ...

    async def read_all(self, stream: str) -> list[tuple[str, dict[str, str]]]:
        """Every message still in the stream (inspection and tests)."""
        ...

    async def close(self) -> None: ...
