"""One shared OAuth access token per credential set (daraja-protocol.md section 1).

Daraja invalidates the previous token whenever a new one is issued, so every client of one credential set
must share one token: `TokenCache.shared(...)` returns the process-wide cache for a (base URL, consumer
key, consumer secret) triple on the running event loop. Refresh happens under a lock, before expiry
(`margin`), and on demand when an API call reports the token invalid (`invalidate(token)` only drops the
token if it is still the current one, so N concurrent 404.001.03s cause one refresh, not N).

That is enough for one process (the embedded stack). Several processes on one consumer key would revoke
each other's tokens: with Redis, `mpesa_adapter.shared_token.RedisTokenCache` shares one token between
them behind the same `AccessTokens` interface.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

Fetch = Callable[[], Awaitable[tuple[str, float]]]  # -> (access_token, expires_in seconds)


class AccessTokens(Protocol):
    """What the Daraja client needs of a token cache."""

    fetches: int  # tokens this cache obtained from Daraja

    async def get(self, fetch: Fetch) -> str: ...

    def invalidate(self, token: str) -> None:
        """The gateway called `token` invalid: forget it, unless it has already been replaced."""

    def known_tokens(self) -> tuple[str, ...]:
        """Tokens this cache handed out recently, for scrubbing them from error messages."""


def refresh_margin(margin: float, expires_in: float) -> float:
    """How long before expiry to refresh: `margin`, but at most half the lifetime of a short-lived token."""
    return min(margin, max(expires_in, 0.0) / 2)


@dataclass
class _Token:
    value: str
    refresh_at: float


class TokenCache:
    _registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, TokenCache]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, margin: float = 120.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._margin = margin
        self._now = monotonic
        self._token: _Token | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0  # how many tokens this cache obtained (observability, tests)

    @classmethod
    def shared(
        cls, base_url: str, consumer_key: str, consumer_secret: str, margin: float = 120.0
    ) -> TokenCache:
        loop = asyncio.get_running_loop()
        digest = hashlib.sha256(f"{base_url}\0{consumer_key}\0{consumer_secret}".encode()).hexdigest()
        per_loop = cls._registry.setdefault(loop, {})
        cache = per_loop.get(digest)
        if cache is None:
            cache = per_loop[digest] = cls(margin)
        return cache

    def _fresh(self) -> str | None:
        token = self._token
        if token is not None and self._now() < token.refresh_at:
            return token.value
        return None

    async def get(self, fetch: Fetch) -> str:
        value = self._fresh()
        if value is not None:
            return value
        async with self._lock:
            value = self._fresh()  # someone else refreshed while we waited
            if value is not None:
                return value
            access_token, expires_in = await fetch()
            self.fetches += 1
            margin = refresh_margin(self._margin, expires_in)
            self._token = _Token(access_token, self._now() + max(expires_in, 0.0) - margin)
            return access_token

    def invalidate(self, token: str) -> None:
        if self._token is not None and self._token.value == token:
            self._token = None

    def known_tokens(self) -> tuple[str, ...]:
        return (self._token.value,) if self._token is not None else ()
