"""One Daraja access token for every PenPay process, shared through Redis (daraja-protocol.md section 1).

Daraja revokes a consumer key's previous token whenever it issues a new one. The in-process cache
(`access_token.TokenCache`) shares a token inside one process only, so the API, the saga workers and the
callbacks confirmer would revoke each other's tokens. With Redis configured, `RedisTokenCache` keeps one:

- key `<prefix>mpesa:oauth:<sha256 of base URL and consumer key>` (Daraja's token scope; no credential
  in the name), value the token, TTL its lifetime minus the refresh margin: the first caller after the
  TTL lapses refreshes it;
- one refresher at a time: `<key>:lock`, SET NX PX with a random owner value, released by
  compare-and-delete (redis-py's Lock) and kept alive while the fetch runs; the others poll for the new
  value. A lock left by a dead process lapses after `lock_ttl`; a waiter that gets nothing within
  `max_wait` fetches a token itself rather than hang;
- each process keeps its copy at most `local_ttl`, so most calls cost no Redis round trip. An
  invalid-token answer seen by any process is honoured: `invalidate(token)` drops the copy, and the next
  `get` deletes the Redis value only if it is still that token (compare-and-delete), so a successor
  another process stored already survives and N invalid answers cause one refresh;
- if Redis fails, the process logs it and fetches a token of its own (the behaviour without Redis)
  rather than fail payments; the next invalid-token answer brings it back to the shared one.

Storing the bearer token in Redis is acceptable: Redis is internal, in the same trust zone as the bus that
carries the payment events (whoever reads it could already forge those), and the value lapses with the
token (an hour at most). The token is never logged, and the key name carries no credential.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from redis.exceptions import LockError, RedisError

from mpesa_adapter.access_token import Fetch, refresh_margin
from mpesa_adapter.config import DarajaConfig

log = logging.getLogger("penpay.mpesa.token")

# Delete KEYS[1] only while it holds ARGV[1]: invalidating a token never removes its successor.
_DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass
class _Copy:
    value: str
    until: float  # monotonic time after which Redis is asked again


class RedisTokenCache:
    def __init__(
        self,
        client: redis.Redis,
        base_url: str,
        consumer_key: str,
        *,
        prefix: str = "penpay:",
        margin: float = 120.0,
        lock_ttl: float = 10.0,
        local_ttl: float = 5.0,
        max_wait: float = 120.0,
        poll: float = 0.05,
        owns_client: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        digest = hashlib.sha256(f"{base_url.rstrip('/')}\0{consumer_key}".encode()).hexdigest()
        self.key = f"{prefix}mpesa:oauth:{digest}"
        self.lock_key = f"{self.key}:lock"
        self._redis: Any = client  # redis-py's stub types fight decode_responses
        self._delete_if_equal = client.register_script(_DELETE_IF_EQUAL)
        self._margin = margin
        self._lock_ttl = lock_ttl
        self._local_ttl = local_ttl
        self._max_wait = max_wait
        self._poll = poll
        self._owns_client = owns_client
        self._now = monotonic
        self._copy: _Copy | None = None
        self._recent: deque[str] = deque(maxlen=4)  # for known_tokens(): a just-replaced token may be echoed
        self._stale: set[str] = set()  # invalidated, to delete from Redis on the next get
        self._lock = asyncio.Lock()  # one Redis conversation per process at a time
        self.fetches = 0

    @classmethod
    def for_config(cls, redis_url: str, config: DarajaConfig, *, prefix: str = "penpay:") -> RedisTokenCache:
        client = redis.Redis.from_url(
            redis_url, decode_responses=True, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        return cls(
            client,
            config.base_url,
            config.consumer_key,
            prefix=prefix,
            margin=config.token_refresh_margin,
            lock_ttl=config.token_lock_ttl,
            local_ttl=config.token_local_ttl,
            # A live refresher may take its whole fetch budget; a dead one's lock lapses after lock_ttl.
            max_wait=config.token_fetch_budget + config.token_lock_ttl,
            owns_client=True,
        )

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()

    # --- the AccessTokens interface -------------------------------------------------------

    async def get(self, fetch: Fetch) -> str:
        if not self._stale:
            value = self._fresh()
            if value is not None:
                return value
        async with self._lock:
            try:
                await self._forget_stale()
                value = self._fresh()  # another task of this process refreshed while we waited
                if value is not None:
                    return value
                return await self._shared(fetch)
            except RedisError as exc:
                log.warning(
                    "daraja token: Redis failed (%s); fetching a token for this process", type(exc).__name__
                )
                token, lifetime = await self._fetch(fetch, None)
                self._keep(token, lifetime)  # until its refresh time: Redis is not asked again before
                return token

    def invalidate(self, token: str) -> None:
        if self._copy is not None and self._copy.value == token:
            self._copy = None
        self._stale.add(token)

    def known_tokens(self) -> tuple[str, ...]:
        return tuple(self._recent)

    # --- internals ------------------------------------------------------------------------

    def _fresh(self) -> str | None:
        copy = self._copy
        if copy is not None and self._now() < copy.until:
            return copy.value
        return None

    def _keep(self, token: str, seconds: float) -> None:
        self._copy = _Copy(token, self._now() + seconds)
        if token not in self._recent:
            self._recent.append(token)

    async def _forget_stale(self) -> None:
        while self._stale:
            token = self._stale.pop()
            await self._delete_if_equal(keys=[self.key], args=[token])

    async def _read(self) -> str | None:
        """The shared token, kept locally for local_ttl (or what is left of its TTL, if less)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            raw, pttl = await pipe.get(self.key).pttl(self.key).execute()
        if not raw:
            return None
        value = raw.decode() if isinstance(raw, bytes) else str(raw)
        self._keep(value, self._local_ttl if pttl < 0 else min(pttl / 1000, self._local_ttl))
        return value

    async def _shared(self, fetch: Fetch) -> str:
        deadline = self._now() + self._max_wait
        while True:
            value = await self._read()
            if value is not None:
                return value
            lock = self._redis.lock(self.lock_key, timeout=self._lock_ttl, thread_local=False)
            if await lock.acquire(blocking=False, token=secrets.token_hex(16)):
                try:
                    # The previous holder stores its token before releasing: look again before fetching.
                    value = await self._read()
                    if value is not None:
                        return value
                    return await self._refresh(fetch, lock)
                finally:
                    try:
                        await lock.release()
                    except (LockError, RedisError):
                        pass  # lapsed or unreachable: it expires by itself
            if self._now() >= deadline:
                log.warning(
                    "daraja token: no refreshed token in Redis after %.1fs; fetching one here", self._max_wait
                )
                return await self._refresh(fetch, None)
            await asyncio.sleep(self._poll)

    async def _refresh(self, fetch: Fetch, lock: Any) -> str:
        token, lifetime = await self._fetch(fetch, lock)
        ttl_ms = int(lifetime * 1000)
        if ttl_ms > 0:
            try:
                await self._redis.set(self.key, token, px=ttl_ms)
            except RedisError as exc:  # we hold a good token: use it, the others will find none and fetch
                log.warning("daraja token: could not store it in Redis (%s)", type(exc).__name__)
        self._keep(token, min(lifetime, self._local_ttl))
        return token

    async def _fetch(self, fetch: Fetch, lock: Any) -> tuple[str, float]:
        """A new token from Daraja and how long to use it; the lock (if held) is kept alive meanwhile."""
        keepalive = asyncio.create_task(self._keep_alive(lock)) if lock is not None else None
        try:
            token, expires_in = await fetch()
        finally:
            if keepalive is not None:
                keepalive.cancel()
                await asyncio.gather(keepalive, return_exceptions=True)
        self.fetches += 1
        return token, max(expires_in, 0.0) - refresh_margin(self._margin, expires_in)

    async def _keep_alive(self, lock: Any) -> None:
        while True:
            await asyncio.sleep(self._lock_ttl / 3)
            try:
                await lock.reacquire()
            except (LockError, RedisError):
                return  # lost: at worst another process fetches too, and the loser gets one retry
