"""Per-recipient rate limits in front of a Notifier: however messages are asked for (code requests
from many IPs, a notification loop), one phone or inbox gets at most `limit` per window per channel.

Past the limit send_* raises RateLimited (the API answers RESOURCE_EXHAUSTED with retry-after).
Keys hold a digest of the recipient, so the limiter's store (Redis) holds no phone or address.
"""

from __future__ import annotations

import hashlib

from application.identity.ports import Notifier, RateLimiter


def _digest(value: str) -> str:
    return hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]


class RecipientLimitedNotifier:
    def __init__(self, inner: Notifier, limiter: RateLimiter, *, limit: int, window_seconds: int) -> None:
        if limit < 1 or window_seconds < 1:
            raise ValueError("a recipient limit needs limit >= 1 and window >= 1 s")
        self.inner = inner
        self._limiter = limiter
        self._limit, self._window = limit, window_seconds

    async def send_sms(self, *, to: str, body: str) -> None:
        await self._limiter.hit(
            f"rl:notify:sms:{_digest(to)}", limit=self._limit, window_seconds=self._window
        )
        await self.inner.send_sms(to=to, body=body)

    async def send_email(self, *, to: str, subject: str, body: str) -> None:
        await self._limiter.hit(
            f"rl:notify:email:{_digest(to)}", limit=self._limit, window_seconds=self._window
        )
        await self.inner.send_email(to=to, subject=subject, body=body)
