"""Rate-limit rules per client IP and per phone (or login identifier) for the sensitive calls.

The limiter (security/rate_limit.py) is a Redis sliding window with an in-process fallback; a
limited call raises RateLimited carrying the seconds to wait (the API maps it to RESOURCE_EXHAUSTED).
Identifiers are hashed before they become keys, so Redis holds no phone numbers or emails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from application.identity.ports import RateLimiter


@dataclass(frozen=True, slots=True)
class RateRule:
    subject: str  # "ip", "phone" or "account"
    limit: int
    window_seconds: int


# Per action: every rule must pass. Windows are sliding.
DEFAULT_RULES: Mapping[str, tuple[RateRule, ...]] = {
    "register": (RateRule("ip", 10, 3600), RateRule("phone", 3, 3600)),
    "login": (RateRule("ip", 30, 300), RateRule("account", 10, 900)),
    "refresh": (RateRule("ip", 60, 60),),
    "verification_request": (RateRule("ip", 20, 3600), RateRule("phone", 5, 3600)),
    "verification_confirm": (RateRule("ip", 30, 600), RateRule("phone", 10, 600)),
    "money": (RateRule("ip", 30, 60), RateRule("phone", 10, 60)),
    # account: the login named (reset) or the user id (change).
    "password_reset_request": (RateRule("ip", 10, 3600), RateRule("account", 3, 3600)),
    "password_reset": (RateRule("ip", 30, 600), RateRule("account", 10, 600)),
    "password_change": (RateRule("ip", 30, 600), RateRule("account", 5, 900)),
}


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class RateLimitGuard:
    def __init__(self, limiter: RateLimiter, rules: Mapping[str, tuple[RateRule, ...]] | None = None) -> None:
        self._limiter = limiter
        self.rules = dict(DEFAULT_RULES if rules is None else rules)

    async def check(
        self, action: str, *, ip: str | None = None, phone: str | None = None, account: str | None = None
    ) -> None:
        subjects = {"ip": ip, "phone": phone, "account": account}
        hits = [
            (f"rl:{action}:{rule.subject}:{_digest(value)}", rule.limit, rule.window_seconds)
            for rule in self.rules.get(action, ())
            if (value := subjects.get(rule.subject))
        ]
        # every window in one round trip; a refused call is counted in none of them
        if len(hits) == 1:
            key, limit, seconds = hits[0]
            await self._limiter.hit(key, limit=limit, window_seconds=seconds)
        elif hits:
            await self._limiter.hit_all(hits)
