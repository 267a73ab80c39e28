"""Client-side rate limiting, sized from `website_status.api_call_limits` (pure: the caller passes `now`).

Deriv counts calls per loginid in per-minute and per-hour windows; going over gives `RateLimit`.
`SlidingWindowLimiter.reserve(now)` records a call and returns how long the caller must wait before
sending it, so calls are spaced rather than refused. A safety factor keeps PenPay below the limit.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class _Window:
    seconds: float
    limit: int
    sent: deque[float] = field(default_factory=deque)

    def delay(self, now: float) -> float:
        while self.sent and self.sent[0] <= now - self.seconds:
            self.sent.popleft()
        if len(self.sent) < self.limit:
            return 0.0
        # the call that would be (limit)th-from-last must have left the window
        return self.sent[len(self.sent) - self.limit] + self.seconds - now


class SlidingWindowLimiter:
    """At most `limit` calls in any `seconds` window, for each window given."""

    def __init__(self, windows: list[tuple[float, int]]) -> None:
        self._windows = [_Window(seconds, max(1, limit)) for seconds, limit in windows if limit > 0]

    @property
    def windows(self) -> list[tuple[float, int]]:
        return [(w.seconds, w.limit) for w in self._windows]

    def delay(self, now: float) -> float:
        """How long a call made now would wait (nothing is reserved)."""
        longest = 0.0
        for window in self._windows:  # a loop, not max() over a generator: once per Deriv call
            wait = window.delay(now)
            if wait > longest:
                longest = wait
        return longest

    def record(self, at: float) -> None:
        for window in self._windows:
            window.sent.append(at)

    def reserve(self, now: float) -> float:
        """Reserve a slot; returns the delay (seconds) after which the call may be sent."""
        delay = self.delay(now)
        self.record(now + delay)
        return delay


@dataclass(frozen=True, slots=True)
class CallLimits:
    general_minutely: int = 180
    general_hourly: int = 14400
    outcome_minutely: int = 25
    outcome_hourly: int = 1500

    @classmethod
    def from_website_status(cls, website_status: dict[str, Any], safety: float = 0.9) -> CallLimits:
        limits = website_status.get("api_call_limits") or {}
        general = limits.get("max_requestes_general") or limits.get("max_requests_general") or {}
        outcome = limits.get("max_requests_outcome") or {}
        default = cls()

        def scaled(block: dict[str, Any], key: str, fallback: int) -> int:
            value = block.get(key)
            if not isinstance(value, int | float) or value <= 0:
                return fallback
            return max(1, int(value * safety))

        return cls(
            general_minutely=scaled(general, "minutely", default.general_minutely),
            general_hourly=scaled(general, "hourly", default.general_hourly),
            outcome_minutely=scaled(outcome, "minutely", default.outcome_minutely),
            outcome_hourly=scaled(outcome, "hourly", default.outcome_hourly),
        )


# Calls Deriv counts in the "outcome"/expensive bucket as well as the general one.
OUTCOME_CALLS = frozenset({"statement", "profit_table", "portfolio"})
# Answered by the WS layer with its own per-connection limit (10/s); not counted here.
UNCOUNTED_CALLS = frozenset({"ping", "time"})


class RateLimiter:
    """The limiter set for one authorized account."""

    def __init__(self, limits: CallLimits | None = None) -> None:
        self.configure(limits or CallLimits())

    def configure(self, limits: CallLimits) -> None:
        self.limits = limits
        self._general = SlidingWindowLimiter(
            [(60.0, limits.general_minutely), (3600.0, limits.general_hourly)]
        )
        self._outcome = SlidingWindowLimiter(
            [(60.0, limits.outcome_minutely), (3600.0, limits.outcome_hourly)]
        )

    def reserve(self, call: str, now: float, max_delay: float | None = None) -> float:
        """Reserve the call's slot in each bucket it counts in, sent at the latest of their delays.

        A call that would wait longer than `max_delay` reserves nothing (the caller refuses it):
        a refused call holding a future slot would push every later call further out.
        """
        if call in UNCOUNTED_CALLS:
            return 0.0
        general = self._general
        delay = general.delay(now)
        outcome = self._outcome if call in OUTCOME_CALLS else None
        if outcome is not None:
            delay = max(delay, outcome.delay(now))
        if max_delay is not None and delay > max_delay:
            return delay
        general.record(now + delay)
        if outcome is not None:
            outcome.record(now + delay)
        return delay
