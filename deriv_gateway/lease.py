"""Leadership: only the lease holder talks to Deriv as the payment agent.

`RedisLease`: SET key <instance> NX PX ttl; on success a fencing token from INCR <key>:fence.
The holder renews every ttl/3 (compare-and-PEXPIRE in Lua) and considers itself leader only until
its local deadline (renewal start + ttl - margin), so it stops sending *before* Redis hands the key
to another instance. A standby retries every `retry` seconds: a dead leader is replaced within
ttl + retry. `LocalLease` is the embedded mode (no Redis): always leader, token 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from typing import Any

from deriv_gateway.logs import get_logger

log = get_logger("deriv_gateway.lease")

LeadershipCallback = Callable[[bool, int | None], Any]

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# Move the fence counter up to ARGV[2] (never down), then give up the lease if we hold it.
_FENCE_BEHIND = """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    token: int | None = None

    @property
    def is_leader(self) -> bool:
        raise NotImplementedError

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def fence_behind(self, seen: int) -> None:
        """The journal has seen token `seen`, newer than the one this lease handed out: the token
        source went back (Redis lost its data). Make every later token larger than `seen`."""
        raise NotImplementedError

    def on_change(self, callback: LeadershipCallback) -> None:
        self._callbacks.append(callback)

    def _notify(self, leader: bool) -> None:
        for callback in list(self._callbacks):
            result = callback(leader, self.token)
            if asyncio.iscoroutine(result):
                asyncio.ensure_future(result)  # noqa: RUF006

    def __init__(self) -> None:
        self._callbacks: list[LeadershipCallback] = []


class LocalLease(Lease):
    """In-process lease for embedded mode: this process is the only gateway."""

    def __init__(self) -> None:
        super().__init__()
        self.token = None
        self._held = False

    @property
    def is_leader(self) -> bool:
        return self._held

    async def start(self) -> None:
        self._held = True
        self.token = 1
        self._notify(True)

    async def stop(self) -> None:
        if self._held:
            self._held = False
            self._notify(False)

    async def fence_behind(self, seen: int) -> None:
        # the only gateway on this database: carry on with a token the journal accepts
        if self._held and (self.token or 0) <= seen:
            self.token = seen + 1
            self._notify(True)


class RedisLease(Lease):
    def __init__(
        self,
        redis_url: str,
        key: str,
        *,
        ttl: float = 5.0,
        retry: float = 0.5,
        instance_id: str | None = None,
        margin: float | None = None,
    ) -> None:
        super().__init__()
        import redis.asyncio as redis

        self._redis: Any = redis.Redis.from_url(redis_url, socket_timeout=max(0.5, ttl / 3))
        self.key = key
        self.fence_key = f"{key}:fence"
        self.ttl_ms = int(ttl * 1000)
        self.retry = retry
        self.instance_id = instance_id or secrets.token_hex(8)
        self.margin = margin if margin is not None else min(1.0, ttl / 5)
        self._deadline = 0.0
        self._task: asyncio.Task[None] | None = None
        self._held = False

    @property
    def is_leader(self) -> bool:
        return self._held and time.monotonic() < self._deadline

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="gateway-lease")

    async def stop(self, release: bool = True) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._held:
            self._set_held(False)
            if release:
                with contextlib.suppress(Exception):
                    await self._redis.eval(_RELEASE, 1, self.key, self.instance_id)
        await self._redis.aclose()

    async def fence_behind(self, seen: int) -> None:
        # a fresh acquisition (INCR) after this hands out seen + 1 or more, to whoever wins it
        log.error("lease.fence_behind_journal", token=self.token, journal=seen, instance=self.instance_id)
        with contextlib.suppress(Exception):
            await self._redis.eval(_FENCE_BEHIND, 2, self.key, self.fence_key, self.instance_id, seen)
        self._set_held(False)

    def kill_renewer(self) -> None:
        """Stop renewing without releasing (a crash, for tests): the key expires on its own."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _set_held(self, held: bool) -> None:
        if held != self._held:
            self._held = held
            if not held:
                self._deadline = 0.0
            log.info("lease.changed", leader=held, fence=self.token, instance=self.instance_id)
            self._notify(held)

    async def _loop(self) -> None:
        renew_every = self.ttl_ms / 3000
        while True:
            started = time.monotonic()
            try:
                if self._held:
                    ok = await self._redis.eval(_RENEW, 1, self.key, self.instance_id, self.ttl_ms)
                    if ok:
                        self._deadline = started + self.ttl_ms / 1000 - self.margin
                    else:
                        log.warning("lease.lost", instance=self.instance_id, token=self.token)
                        self._set_held(False)
                else:
                    acquired = await self._redis.set(self.key, self.instance_id, nx=True, px=self.ttl_ms)
                    if acquired:
                        self.token = int(await self._redis.incr(self.fence_key))
                        self._deadline = started + self.ttl_ms / 1000 - self.margin
                        self._set_held(True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("lease.redis_error", error=type(exc).__name__)
                if self._held and time.monotonic() >= self._deadline:
                    self._set_held(False)
            if self._held and time.monotonic() >= self._deadline:
                self._set_held(False)
            await asyncio.sleep(renew_every if self._held else self.retry)
