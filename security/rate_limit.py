"""Sliding-window rate limiting: Redis (a sorted set per key, updated atomically by a Lua script,
timed by the Redis server's clock so every PenPay process agrees), with an in-process fallback
used when no Redis is configured or while Redis does not answer.

A call past the limit raises RateLimited with the seconds until the oldest counted call leaves
the window; refused calls are not counted (a client hammering while limited is not punished
further, and the window frees up on schedule).
"""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import structlog
from redis.exceptions import RedisError

from application.identity.errors import RateLimited

log = structlog.get_logger("penpay.rate_limit")

# KEYS[1] = the window's sorted set; ARGV = limit, window (ms), unique member suffix.
# Returns 0 if counted, else milliseconds until a slot frees up.
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
if wait < 1 then wait = 1 end
return wait
"""


# Every window of one call at once (KEYS; ARGV = unique member suffix, then limit and window (ms) per
# key): all are judged first and the call is counted in all of them, or, refused, in none. One round
# trip for the ip and phone windows of a money call, where a script per window took one each.
_SLIDING_WINDOWS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local wait = tonumber(oldest[2]) + window - now
    if wait < 1 then wait = 1 end
    return wait
  end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, now .. '-' .. ARGV[1])
  redis.call('PEXPIRE', key, tonumber(ARGV[2 * i + 1]))
end
return 0
"""

Hit = tuple[str, int, int]  # key, limit, window in seconds


def _limited(wait_seconds: float) -> RateLimited:
    seconds = max(1, math.ceil(wait_seconds))
    return RateLimited(f"too many attempts; try again in {seconds} s", retry_after_seconds=seconds)


class InProcessRateLimiter:
    """Per-process sliding window (one process only: the fallback, and tests)."""

    def __init__(self, *, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, deque[float]] = {}

    async def hit(self, key: str, *, limit: int, window_seconds: int) -> None:
        now = self._clock()
        window = self._windows.setdefault(key, deque())
        while window and window[0] <= now - window_seconds:
            window.popleft()
        if len(window) >= limit:
            raise _limited(window[0] + window_seconds - now)
        window.append(now)
        self._bound()

    async def hit_all(self, hits: Sequence[Hit]) -> None:
        now = self._clock()
        windows = [(self._windows.setdefault(key, deque()), limit, seconds) for key, limit, seconds in hits]
        for window, limit, seconds in windows:
            while window and window[0] <= now - seconds:
                window.popleft()
            if len(window) >= limit:
                raise _limited(window[0] + seconds - now)
        for window, _, _ in windows:
            window.append(now)
        self._bound()

    def _bound(self) -> None:
        if len(self._windows) > 100_000:  # bound memory: drop empty windows
            for k in [k for k, w in self._windows.items() if not w]:
                del self._windows[k]


class RedisRateLimiter:
    """After a Redis failure, the in-process window is used for `retry_redis_after` seconds
    without trying Redis (no per-request timeout while Redis is down)."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "penpay:",
        fallback: InProcessRateLimiter | None = None,
        retry_redis_after: float = 5.0,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_SLIDING_WINDOW)
        self._scripts = client.register_script(_SLIDING_WINDOWS)
        self._fallback = fallback or InProcessRateLimiter()
        self._retry_after = retry_redis_after
        self._redis_down_until = 0.0

    @staticmethod
    def client_options() -> dict[str, Any]:
        """Fail fast: short timeouts and no retry loop (the fallback answers instead)."""
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        return {"socket_timeout": 0.5, "socket_connect_timeout": 0.5, "retry": Retry(NoBackoff(), 0)}

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "penpay:") -> RedisRateLimiter:
        import redis.asyncio as redis

        return cls(redis.Redis.from_url(url, **cls.client_options()), prefix=prefix)

    async def hit(self, key: str, *, limit: int, window_seconds: int) -> None:
        if time.monotonic() < self._redis_down_until:
            await self._fallback.hit(key, limit=limit, window_seconds=window_seconds)
            return
        try:
            wait_ms = await self._script(
                keys=[self._prefix + key], args=[limit, window_seconds * 1000, secrets.token_hex(6)]
            )
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("rate_limit.redis_unavailable", error=type(exc).__name__)
            self._redis_down_until = time.monotonic() + self._retry_after
            await self._fallback.hit(key, limit=limit, window_seconds=window_seconds)
            return
        if int(wait_ms) > 0:
            raise _limited(int(wait_ms) / 1000)

    async def hit_all(self, hits: Sequence[Hit]) -> None:
        if time.monotonic() < self._redis_down_until:
            await self._fallback.hit_all(hits)
            return
        args: list[object] = [secrets.token_hex(6)]
        for _, limit, seconds in hits:
            args += [limit, seconds * 1000]
        try:
            wait_ms = await self._scripts(keys=[self._prefix + key for key, _, _ in hits], args=args)
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("rate_limit.redis_unavailable", error=type(exc).__name__)
            self._redis_down_until = time.monotonic() + self._retry_after
            await self._fallback.hit_all(hits)
            return
        if int(wait_ms) > 0:
            raise _limited(int(wait_ms) / 1000)

    async def aclose(self) -> None:
        await self._client.aclose()


def rate_limiter_from_url(
    redis_url: str | None, *, prefix: str = "penpay:"
) -> RedisRateLimiter | InProcessRateLimiter:
    """Redis when PENPAY_REDIS_URL is set, else in-process."""
    return RedisRateLimiter.from_url(redis_url, prefix=prefix) if redis_url else InProcessRateLimiter()
