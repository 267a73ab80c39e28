"""One limiter per token: Deriv's REST limit is 60 requests a minute per token (anchors §3).

Transfers, status probes and statement pages share it. A 429's `next_request_at` blocks the token
until then. Pure: the caller passes `now` (epoch seconds, since next_request_at is one).
"""

from __future__ import annotations

import hashlib

from deriv_gateway.protocol.ratelimit import SlidingWindowLimiter


class TokenLimiter:
    def __init__(self, per_minute: int = 60) -> None:
        self._window = SlidingWindowLimiter([(60.0, per_minute)])
        self.blocked_until = 0.0

    def delay(self, now: float) -> float:
        return max(self._window.delay(now), self.blocked_until - now, 0.0)

    def reserve(self, now: float, max_delay: float) -> float:
        """The wait before the call may go; nothing is reserved when it exceeds max_delay."""
        delay = self.delay(now)
        if delay <= max_delay:
            self._window.record(now + delay)
        return delay

    def block(self, until: float) -> None:
        self.blocked_until = max(self.blocked_until, until)


class Limiters:
    """Limiters by token; keyed by a digest so the token itself is not a key kept around."""

    def __init__(self, per_minute: int = 60) -> None:
        self.per_minute = per_minute
        self._by_token: dict[str, TokenLimiter] = {}

    def for_token(self, token: str) -> TokenLimiter:
        key = hashlib.sha256(token.encode()).hexdigest()[:32]
        limiter = self._by_token.get(key)
        if limiter is None:
            limiter = self._by_token[key] = TokenLimiter(self.per_minute)
        return limiter
