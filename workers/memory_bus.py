"""MessageBus in process (the embedded default: no Redis).

Same semantics as the Redis adapter as far as they are cheap: per-stream consumer groups
starting at the beginning of the stream, pending entries until ack, delivery counts, claims
of idle pending entries (so a failed message is redelivered after `min_idle_ms`), dead-letter
streams and replay, approximate length bound. One event loop; nothing survives the process:
run the relay and the consumers in the same process (see workers.host), and expect messages
published but not yet handled when the process dies to be lost from the bus (their outbox
rows stay; the embedded host can requeue them).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from domain.shared.clock import Clock, SystemClock
from workers.bus import DEAD_SUFFIX, DeadLetter, Delivery, dead_letter_fields, dead_stream

DEFAULT_MAXLEN = 100_000


@dataclass(slots=True)
class _Pending:
    consumer: str
    delivered_at: float
    count: int


@dataclass(slots=True)
class _Group:
    last_seq: int = 0  # entries with a larger sequence number are new to the group
    pending: dict[str, _Pending] = field(default_factory=dict)


@dataclass(slots=True)
class _Stream:
    entries: OrderedDict[str, tuple[int, dict[str, str]]] = field(default_factory=OrderedDict)
    groups: dict[str, _Group] = field(default_factory=dict)


class InProcessBus:
    def __init__(
        self,
        *,
        maxlen: int = DEFAULT_MAXLEN,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Clock | None = None,
    ) -> None:
        self.maxlen = maxlen
        self._now = monotonic  # idle times of pending entries
        self._clock = clock or SystemClock()  # entry ids (milliseconds, as Redis's) and dead_at
        self._streams: dict[str, _Stream] = {}
        self._seq = itertools.count(1)
        self._changed = asyncio.Event()

    def _stream(self, name: str) -> _Stream:
        return self._streams.setdefault(name, _Stream())

    def _append(self, stream: str, fields: Mapping[str, str]) -> str:
        seq = next(self._seq)
        message_id = f"{int(self._clock.now().timestamp() * 1000)}-{seq}"
        entries = self._stream(stream).entries
        entries[message_id] = (seq, dict(fields))
        while len(entries) > self.maxlen:
            entries.popitem(last=False)
        return message_id

    async def publish(self, messages: Sequence[tuple[str, Mapping[str, str]]]) -> list[str]:
        ids = [self._append(stream, fields) for stream, fields in messages]
        if ids:
            self._changed.set()
        return ids

    async def ensure_group(self, stream: str, group: str) -> None:
        self._stream(stream).groups.setdefault(group, _Group())

    def _take_new(self, streams: Sequence[str], group: str, consumer: str, count: int) -> list[Delivery]:
        out: list[Delivery] = []
        for name in streams:
            stream = self._stream(name)
            state = stream.groups.get(group)
            if state is None:
                raise LookupError(f"NOGROUP no group {group!r} on stream {name!r}")
            new = []  # walk back from the newest entry: O(new entries), not O(stream)
            for message_id, (seq, fields) in reversed(stream.entries.items()):
                if seq <= state.last_seq:
                    break
                new.append((message_id, seq, fields))
            for message_id, seq, fields in reversed(new):
                if len(out) >= count:
                    return out
                state.last_seq = seq
                state.pending[message_id] = _Pending(consumer, self._now(), 1)
                out.append(Delivery(name, message_id, dict(fields), 1))
        return out

    async def read(
        self, streams: Sequence[str], group: str, consumer: str, *, count: int, block_ms: int
    ) -> list[Delivery]:
        deliveries = self._take_new(streams, group, consumer, count)
        if deliveries or block_ms <= 0:
            return deliveries
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), block_ms / 1000)
        except TimeoutError:
            return []
        return self._take_new(streams, group, consumer, count)

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int
    ) -> list[Delivery]:
        state = self._stream(stream)
        pending = state.groups[group].pending
        now = self._now()
        out: list[Delivery] = []
        for message_id, entry in list(pending.items()):
            if len(out) >= count:
                break
            if (now - entry.delivered_at) * 1000 < min_idle_ms:
                continue
            stored = state.entries.get(message_id)
            if stored is None:  # trimmed away: dropped from the pending list, as XAUTOCLAIM does
                del pending[message_id]
                continue
            entry.consumer, entry.delivered_at, entry.count = consumer, now, entry.count + 1
            out.append(Delivery(stream, message_id, dict(stored[1]), entry.count))
        return out

    async def ack(self, stream: str, group: str, *message_ids: str) -> None:
        pending = self._stream(stream).groups[group].pending
        for message_id in message_ids:
            pending.pop(message_id, None)

    async def pending_count(self, stream: str, group: str) -> int:
        return len(self._stream(stream).groups[group].pending)

    async def dead_letter(self, delivery: Delivery, *, group: str, consumer: str, error: str) -> str:
        fields = dead_letter_fields(
            delivery, group=group, consumer=consumer, error=error, dead_at=self._clock.now().isoformat()
        )
        dead_id = self._append(dead_stream(delivery.stream), fields)
        await self.ack(delivery.stream, group, delivery.message_id)
        return dead_id

    async def dead_letter_streams(self) -> list[str]:
        return sorted(
            name.removesuffix(DEAD_SUFFIX)
            for name, stream in self._streams.items()
            if name.endswith(DEAD_SUFFIX) and stream.entries
        )

    async def list_dead(self, stream: str, *, count: int = 100) -> list[DeadLetter]:
        entries = list(self._stream(dead_stream(stream)).entries.items())[:count]
        return [DeadLetter.from_fields(stream, i, f) for i, (_, f) in entries]

    async def replay_dead(self, stream: str, dead_id: str) -> str | None:
        stored = self._stream(dead_stream(stream)).entries.pop(dead_id, None)
        if stored is None:
            return None
        letter = DeadLetter.from_fields(stream, dead_id, stored[1])
        (new_id,) = await self.publish([(letter.stream, letter.fields)])
        return new_id

    async def read_all(self, stream: str) -> list[tuple[str, dict[str, str]]]:
        return [(i, dict(f)) for i, (_, f) in self._stream(stream).entries.items()]

    async def close(self) -> None:
        return None
