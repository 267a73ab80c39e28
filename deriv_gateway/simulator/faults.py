"""Seeded, reproducible fault injection.

A rule targets a call (or `*`), optionally an account and field substrings, and fires on its matching
requests by `nth` occurrence and/or with a probability drawn from its own `random.Random(f"{seed}:{id}")`,
so the same seed and the same sequence of matching requests give the same schedule (other traffic and
other rules do not shift it).

Kinds:
  drop_before   close the socket (no close frame) before executing the request
  drop_after    execute the request, then close the socket without replying
  delay         execute, reply after `delay` seconds (past the request timeout: the Timeout error instead)
  rate_limit    answer RateLimit without executing
  timeout       answer Timeout after `delay` (default: the request timeout); executes first unless
                `execute` is false, the ambiguous case a money client must survive
  duplicate     execute once, send the reply twice
  skip_stream   drop balance/transaction stream updates (call = "balance", "transaction" or "*")
  other_operation  answer about another operation (foreign.py): a money call's reply names another
                reference and transaction id (executing ours first unless `execute` is false); a
                statement's reply is another query's page
  other_line    a statement reply to our query whose lines name another client and amount
  reused_transaction_id  execute a money call and answer it with the previous transfer's id
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

REQUEST_KINDS = (
    "drop_before",
    "drop_after",
    "delay",
    "rate_limit",
    "timeout",
    "duplicate",
    "other_operation",
    "other_line",
    "reused_transaction_id",
)
# the calls a kind applies to (any call when absent)
KIND_CALLS = {
    "other_operation": ("paymentagent_transfer", "paymentagent_withdraw", "statement"),
    "other_line": ("statement",),
    "reused_transaction_id": ("paymentagent_transfer", "paymentagent_withdraw"),
}
KINDS = (*REQUEST_KINDS, "skip_stream")


class FaultError(ValueError):
    pass


@dataclass
class FaultRule:
    id: str
    kind: str
    call: str = "*"
    match: dict[str, str] = field(default_factory=dict)
    loginid: str | None = None
    nth: int | None = None
    times: int | None = None
    probability: float = 1.0
    delay: float | None = None
    execute: bool = True
    seen: int = 0
    fired: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], rule_id: str, seed: int) -> FaultRule:
        kind = data.get("kind")
        if kind not in KINDS:
            raise FaultError(f"kind must be one of {', '.join(KINDS)}")
        unknown = set(data) - {
            "id",
            "kind",
            "call",
            "match",
            "loginid",
            "nth",
            "times",
            "probability",
            "delay",
            "execute",
        }
        if unknown:
            raise FaultError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        match = data.get("match") or {}
        if not isinstance(match, dict) or not all(isinstance(v, str) for v in match.values()):
            raise FaultError("match must map field names to substrings")
        probability = float(data.get("probability", 1.0))
        if not 0.0 <= probability <= 1.0:
            raise FaultError("probability must be within [0, 1]")
        nth = data.get("nth")
        times = data.get("times")
        delay = data.get("delay")
        if kind == "delay" and delay is None:
            raise FaultError("a delay fault needs delay (seconds)")
        if kind in KIND_CALLS and data.get("call") not in KIND_CALLS[kind]:
            raise FaultError(f"a {kind} fault needs call: one of {', '.join(KIND_CALLS[kind])}")
        rid = str(data.get("id") or rule_id)
        return cls(
            id=rid,
            kind=kind,
            call=str(data.get("call") or "*"),
            match={str(k): v for k, v in match.items()},
            loginid=str(data["loginid"]).upper() if data.get("loginid") else None,
            nth=int(nth) if nth is not None else None,
            times=int(times) if times is not None else None,
            probability=probability,
            delay=float(delay) if delay is not None else None,
            execute=bool(data.get("execute", True)),
            rng=random.Random(f"{seed}:{rid}"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "call": self.call,
            "match": self.match,
            "loginid": self.loginid,
            "nth": self.nth,
            "times": self.times,
            "probability": self.probability,
            "delay": self.delay,
            "execute": self.execute,
            "seen": self.seen,
            "fired": self.fired,
        }

    def _matches(self, call: str, request: dict[str, Any], loginid: str | None) -> bool:
        if self.call not in ("*", call):
            return False
        if self.loginid is not None and self.loginid != loginid:
            return False
        for key, needle in self.match.items():
            value = request.get(key)
            if value is None or needle not in str(value):
                return False
        return True

    def _trial(self) -> bool:
        """Count a matching occurrence and decide whether the rule fires on it."""
        self.seen += 1
        if self.times is not None and self.fired >= self.times:
            return False
        if self.nth is not None and self.seen != self.nth:
            return False
        if self.probability < 1.0 and self.rng.random() >= self.probability:
            return False
        self.fired += 1
        return True


class FaultInjector:
    def __init__(self, seed: int, rules: list[dict[str, Any]] | None = None) -> None:
        self.seed = seed
        self.rules: list[FaultRule] = []
        self._counter = 0
        for rule in rules or []:
            self.add(rule)

    def add(self, data: dict[str, Any]) -> FaultRule:
        self._counter += 1
        rule = FaultRule.from_dict(data, f"f{self._counter}", self.seed)
        if any(r.id == rule.id for r in self.rules):
            raise FaultError(f"duplicate fault id {rule.id}")
        self.rules.append(rule)
        return rule

    def remove(self, rule_id: str) -> bool:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        return len(self.rules) != before

    def clear(self) -> None:
        self.rules.clear()
        self._counter = 0

    def decide(self, call: str, request: dict[str, Any], loginid: str | None) -> FaultRule | None:
        """The first request fault that fires on this request (every matching rule counts it)."""
        chosen = None
        for rule in self.rules:
            if rule.kind == "skip_stream" or not rule._matches(call, request, loginid):
                continue
            if rule._trial() and chosen is None:
                chosen = rule
        return chosen

    def skip_stream(self, stream: str, loginid: str) -> bool:
        skip = False
        for rule in self.rules:
            if rule.kind != "skip_stream" or not rule._matches(stream, {}, loginid):
                continue
            if rule._trial():
                skip = True
        return skip
