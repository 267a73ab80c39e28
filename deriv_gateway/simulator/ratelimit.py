"""Sliding-window rate limits (Deriv's first pre-dispatch check)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .config import RateLimitConfig

# calls counted in Deriv's "outcome" bucket (website_status: "portfolio, statement and proposal")
OUTCOME_CALLS = frozenset({"statement", "portfolio", "profit_table", "proposal"})
CONNECTION_CALLS = frozenset({"ping", "time"})


class SlidingWindows:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        # key -> window seconds -> the hit times inside that window, oldest first. One queue per
        # window makes a count len(): counting the minute inside the hour's queue walked every hit
        # of the hour on every request (most of the simulator's time under sustained load).
        self._hits: dict[tuple[Any, ...], dict[float, deque[float]]] = {}

    def allow(self, key: tuple[Any, ...], limits: list[tuple[float, int]]) -> bool:
        """Record a hit under key unless any (window seconds, max hits) would be exceeded."""
        now = self._monotonic()
        windows = self._hits.setdefault(key, {})
        queues = []
        for window, maximum in limits:
            hits = windows.setdefault(window, deque())
            since = now - window
            while hits and hits[0] <= since:
                hits.popleft()
            if len(hits) >= maximum:
                return False
            queues.append(hits)
        for hits in queues:
            hits.append(now)
        return True

    def forget(self, prefix: Any) -> None:
        for key in [k for k in self._hits if k and k[0] == prefix]:
            del self._hits[key]

    def clear(self) -> None:
        self._hits.clear()


class RateLimiter:
    def __init__(self, config: RateLimitConfig, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.windows = SlidingWindows(monotonic)
        # RateLimit answers the limits gave (injected faults not included), by call: so a client can
        # be shown to stay under Deriv's limits, not just assumed to
        self.refused: dict[str, int] = {}

    def check(self, call: str, connection_id: int, loginid: str | None) -> bool:
        """True if the request may proceed."""
        allowed = self._allow(call, connection_id, loginid)
        if not allowed:
            self.refused[call] = self.refused.get(call, 0) + 1
        return allowed

    def _allow(self, call: str, connection_id: int, loginid: str | None) -> bool:
        cfg = self.config
        if not cfg.enabled:
            return True
        if call in CONNECTION_CALLS:
            return self.windows.allow(("conn", connection_id, "ping"), [(1.0, cfg.ping_per_second)])
        subject = ("login", loginid) if loginid else ("conn", connection_id)
        if call in OUTCOME_CALLS:
            limits = [(60.0, cfg.outcome_minutely), (3600.0, cfg.outcome_hourly)]
            bucket = "outcome"
        else:
            limits = [(60.0, cfg.general_minutely), (3600.0, cfg.general_hourly)]
            bucket = "general"
        return self.windows.allow((*subject, bucket), limits)

    def api_call_limits(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "max_proposal_subscription": {
                "applies_to": "subscribing to proposal concurrently",
                "max": cfg.max_proposal_subscription,
            },
            "max_requestes_general": {
                "applies_to": "rest of calls",
                "hourly": cfg.general_hourly,
                "minutely": cfg.general_minutely,
            },
            "max_requests_outcome": {
                "applies_to": "portfolio, statement and proposal",
                "hourly": cfg.outcome_hourly,
                "minutely": cfg.outcome_minutely,
            },
            "max_requests_pricing": {
                "applies_to": "proposal and proposal_open_contract",
                "hourly": cfg.pricing_hourly,
                "minutely": cfg.pricing_minutely,
            },
        }
