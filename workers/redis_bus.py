"""MessageBus on Redis Streams: XADD (MAXLEN ~), XREADGROUP, XACK, XAUTOCLAIM, XPENDING.

Keys are `<prefix><stream>`; the prefix namespaces an environment (or a test). Streams are
trimmed approximately to `maxlen` entries on every XADD: trimming never waits for consumers,
so keep it far above the backlog a group can fall behind by (default one million). A trimmed
but unacknowledged message is dropped from the pending list by XAUTOCLAIM; its outbox row
still holds the event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ResponseError

from domain.shared.clock import Clock, SystemClock
from workers.bus import DEAD_SUFFIX, DeadLetter, Delivery, dead_letter_fields, dead_stream

DEFAULT_MAXLEN = 1_000_000


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in raw.items()}


class RedisStreamsBus:
    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "",
        maxlen: int = DEFAULT_MAXLEN,
        owns_client: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self._redis: Any = client  # redis-py's stub types fight decode_responses; parsed below
        self.prefix = prefix
        self.maxlen = maxlen
        self._owns_client = owns_client
        self._clock = clock or SystemClock()  # a dead letter's dead_at

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "", maxlen: int = DEFAULT_MAXLEN, clock: Clock | None = None
    ) -> RedisStreamsBus:
        client = redis.Redis.from_url(url, decode_responses=True, protocol=2)
        return cls(client, prefix=prefix, maxlen=maxlen, owns_client=True, clock=clock)

    def key(self, stream: str) -> str:
        return f"{self.prefix}{stream}"

    def _logical(self, key: Any) -> str:
        return _s(key).removeprefix(self.prefix)

    async def publish(self, messages: Sequence[tuple[str, Mapping[str, str]]]) -> list[str]:
        if not messages:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream, fields in messages:
                pipe.xadd(self.key(stream), dict(fields), maxlen=self.maxlen, approximate=True)
            ids = await pipe.execute()
        return [_s(i) for i in ids]

    async def ensure_group(self, stream: str, group: str) -> None:
        try:
            await self._redis.xgroup_create(self.key(stream), group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(
        self, streams: Sequence[str], group: str, consumer: str, *, count: int, block_ms: int
    ) -> list[Delivery]:
        response = await self._redis.xreadgroup(
            group, consumer, {self.key(s): ">" for s in streams}, count=count, block=block_ms or None
        )
        deliveries: list[Delivery] = []
        for key, entries in response or []:
            for message_id, fields in entries:
                if fields is not None:
                    deliveries.append(Delivery(self._logical(key), _s(message_id), _fields(fields), 1))
        return deliveries

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int
    ) -> list[Delivery]:
        key = self.key(stream)
        response = await self._redis.xautoclaim(key, group, consumer, min_idle_ms, "0-0", count=count)
        entries = [(_s(i), f) for i, f in response[1] if f is not None]
        deliveries = []
        for message_id, fields in entries:
            # XAUTOCLAIM counts the delivery but does not report the count: XPENDING does.
            info = await self._redis.xpending_range(key, group, message_id, message_id, 1)
            times = int(info[0]["times_delivered"]) if info else 1
            deliveries.append(Delivery(stream, message_id, _fields(fields), times))
        return deliveries

    async def ack(self, stream: str, group: str, *message_ids: str) -> None:
        if message_ids:
            await self._redis.xack(self.key(stream), group, *message_ids)

    async def pending_count(self, stream: str, group: str) -> int:
        info = await self._redis.xpending(self.key(stream), group)
        return int(info["pending"])

    async def dead_letter(self, delivery: Delivery, *, group: str, consumer: str, error: str) -> str:
        fields = dead_letter_fields(
            delivery, group=group, consumer=consumer, error=error, dead_at=self._clock.now().isoformat()
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.key(dead_stream(delivery.stream)), fields, maxlen=self.maxlen, approximate=True)
            pipe.xack(self.key(delivery.stream), group, delivery.message_id)
            dead_id, _ = await pipe.execute()
        return _s(dead_id)

    async def dead_letter_streams(self) -> list[str]:
        found = set()
        async for key in self._redis.scan_iter(match=f"{self.prefix}*{DEAD_SUFFIX}", _type="stream"):
            logical = self._logical(key)
            if _s(key).startswith(self.prefix):
                found.add(logical.removesuffix(DEAD_SUFFIX))
        return sorted(found)

    async def list_dead(self, stream: str, *, count: int = 100) -> list[DeadLetter]:
        entries = await self._redis.xrange(self.key(dead_stream(stream)), count=count)
        return [DeadLetter.from_fields(stream, _s(i), _fields(f)) for i, f in entries]

    async def replay_dead(self, stream: str, dead_id: str) -> str | None:
        dead_key = self.key(dead_stream(stream))
        entries = await self._redis.xrange(dead_key, min=dead_id, max=dead_id)
        if not entries:
            return None
        letter = DeadLetter.from_fields(stream, dead_id, _fields(entries[0][1]))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.key(letter.stream), dict(letter.fields), maxlen=self.maxlen, approximate=True)
            pipe.xdel(dead_key, dead_id)
            new_id, _ = await pipe.execute()
        return _s(new_id)

    async def read_all(self, stream: str) -> list[tuple[str, dict[str, str]]]:
        entries = await self._redis.xrange(self.key(stream))
        return [(_s(i), _fields(f)) for i, f in entries]

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()
