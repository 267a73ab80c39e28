"""Seeded fault rules for the REST API (the v3 rules' counting: nth, times, probability per rule).

Kinds:
  drop_before       close the connection before executing (nothing happened)
  drop_after        execute, then close the connection without an answer
  timeout_after     execute, then answer 504 (the gateway timed out; the money moved)
  transient_500     answer 500 with a transient code, without executing
  pending           (newer generation) answer `pending`; the operation settles `settle_after`
                    seconds of simulator clock later, to `settle_to` (complete, rejected, failed)
  rate_limit        answer 429 RateLimit with `next_request_at` = now + `retry_in`, not executed
  request_id_used   execute, then answer 400 RequestIDUsed (the answer to a first attempt was lost
                    and a retry reached the server: the client sees only the retry's answer)
  otp_rate_limit    answer the verification-code request OtpRateLimitExceeded (+ next_request_at)
  forbidden         answer 403 (the token lacks the scope), without executing
  delay_after       execute, then answer after `delay` seconds of real time (a client timeout)
  foreign_answer    answer as if about another request (metadata.endpoint names another
                    request_id): a client must not use it (issue 21)

`endpoint` names the operation: transfer, transfer_status, withdraw, withdraw_status,
verification_code, wallets, transactions, agents, or "*". `match` compares fields of the request's
`data` (or the path's request_id) by substring.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

KINDS = (
    "drop_before",
    "drop_after",
    "timeout_after",
    "transient_500",
    "pending",
    "rate_limit",
    "request_id_used",
    "otp_rate_limit",
    "foreign_answer",
    "delay_after",
    "forbidden",
)
_FIELDS = {
    "id", "kind", "endpoint", "match", "nth", "times", "probability",
    "settle_to", "settle_after", "retry_in", "code", "delay",
}  # fmt: skip


class RestFaultError(ValueError):
    pass


@dataclass
class RestFault:
    id: str
    kind: str
    endpoint: str = "*"
    match: dict[str, str] = field(default_factory=dict)
    nth: int | None = None
    times: int | None = None
    probability: float = 1.0
    settle_to: str = "complete"
    settle_after: float = 0.0
    retry_in: int = 30
    code: str | None = None  # transient_500: which code (default per endpoint)
    delay: float = 0.0  # delay_after: seconds
    seen: int = 0
    fired: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], rule_id: str, seed: int) -> RestFault:
        kind = data.get("kind")
        if kind not in KINDS:
            raise RestFaultError(f"kind must be one of {', '.join(KINDS)}")
        unknown = set(data) - _FIELDS
        if unknown:
            raise RestFaultError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        settle_to = str(data.get("settle_to", "complete"))
        if settle_to not in ("complete", "rejected", "failed"):
            raise RestFaultError("settle_to must be complete, rejected or failed")
        probability = float(data.get("probability", 1.0))
        if not 0.0 <= probability <= 1.0:
            raise RestFaultError("probability must be within [0, 1]")
        match = data.get("match") or {}
        if not isinstance(match, dict):
            raise RestFaultError("match must map field names to substrings")
        rid = str(data.get("id") or rule_id)
        return cls(
            id=rid,
            kind=str(kind),
            endpoint=str(data.get("endpoint") or "*"),
            match={str(k): str(v) for k, v in match.items()},
            nth=int(data["nth"]) if data.get("nth") is not None else None,
            times=int(data["times"]) if data.get("times") is not None else None,
            probability=probability,
            settle_to=settle_to,
            settle_after=float(data.get("settle_after", 0.0)),
            retry_in=int(data.get("retry_in", 30)),
            code=str(data["code"]) if data.get("code") else None,
            delay=float(data.get("delay", 0.0)),
            rng=random.Random(f"{seed}:rest:{rid}"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "endpoint": self.endpoint,
            "match": self.match,
            "nth": self.nth,
            "times": self.times,
            "probability": self.probability,
            "settle_to": self.settle_to,
            "settle_after": self.settle_after,
            "retry_in": self.retry_in,
            "code": self.code,
            "delay": self.delay,
            "seen": self.seen,
            "fired": self.fired,
        }

    def matches(self, endpoint: str, fields: dict[str, Any]) -> bool:
        if self.endpoint not in ("*", endpoint):
            return False
        return all(k in fields and v in str(fields[k]) for k, v in self.match.items())

    def trial(self) -> bool:
        self.seen += 1
        if self.times is not None and self.fired >= self.times:
            return False
        if self.nth is not None and self.seen != self.nth:
            return False
        if self.probability < 1.0 and self.rng.random() >= self.probability:
            return False
        self.fired += 1
        return True


class RestFaults:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rules: list[RestFault] = []
        self._counter = 0

    def add(self, data: dict[str, Any]) -> RestFault:
        self._counter += 1
        rule = RestFault.from_dict(data, f"r{self._counter}", self.seed)
        if any(r.id == rule.id for r in self.rules):
            raise RestFaultError(f"duplicate fault id {rule.id}")
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()
        self._counter = 0

    def decide(self, endpoint: str, fields: dict[str, Any]) -> RestFault | None:
        """The first rule that fires on this request (every matching rule counts it)."""
        chosen = None
        for rule in self.rules:
            if rule.matches(endpoint, fields) and rule.trial() and chosen is None:
                chosen = rule
        return chosen
