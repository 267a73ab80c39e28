"""Outcome and fault selection: phone-number rules, control-API rules, seeded draws. Pure logic.

Phone-number rules (when config.phone_rules is on):
- The last four digits of the phone (STK PhoneNumber, B2C PartyB), read as a zero-padded result code,
  pick the outcome when that code is in STK_PHONE_OUTCOMES / B2C_PHONE_OUTCOMES (e.g. ...1032 cancels).
- Phones in the "lab" range 2547000Fxxxx / 2541000Fxxxx also get the fault numbered by the digit F
  (PHONE_FAULTS), e.g. 254700011032 is a cancelled push whose callback is sent twice.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from mpesa_adapter.simulator import errors
from mpesa_adapter.simulator.errors import parse_code

STK_PHONE_OUTCOMES: dict[str, int] = {
    "0001": 1,  # insufficient funds
    "0017": 17,  # rule limited
    "1001": 1001,  # subscriber busy
    "1019": 1019,  # expired
    "1025": 1025,  # error sending push
    "1032": 1032,  # cancelled by user
    "1037": 1037,  # unreachable
    "2001": 2001,  # wrong PIN
    "8006": 8006,  # PIN locked
}
B2C_PHONE_OUTCOMES: dict[str, int] = {
    "0001": 1,  # utility account short
    "0011": 11,
    "0021": 21,
    "2001": 2001,  # initiator information invalid
    "2006": 2006,
    "2028": 2028,
    "2040": 2040,  # unregistered customer
    "8006": 8006,
}
PHONE_FAULTS: dict[str, str] = {
    "1": "duplicate",
    "2": "late",
    "3": "drop",
    "4": "out_of_order",
    "5": "unknown_callback",
    "6": "queue_timeout",
    "7": "spike_arrest",
}

APIS = ("oauth", "stk", "stk_query", "b2c", "status", "balance", "c2b", "pull_query", "reversal")
# c2b: the paybill confirmation; reversal: a Reversal's Result
CALLBACK_APIS = ("stk", "b2c", "status", "balance", "c2b", "reversal")
SYNC_FAULTS: dict[str, tuple[int, str, str]] = {
    "spike_arrest": errors.SPIKE_ARREST,
    "quota": errors.QUOTA_VIOLATION,
    "internal_error": errors.INTERNAL_ERROR,
}
CALLBACK_FAULTS: dict[str, tuple[str, ...]] = {
    "duplicate": CALLBACK_APIS,
    "late": CALLBACK_APIS,
    "drop": CALLBACK_APIS,
    "out_of_order": CALLBACK_APIS,
    "delay": CALLBACK_APIS,
    "unknown_callback": ("stk", "b2c"),
    "queue_timeout": ("b2c", "status", "balance", "reversal"),
    # The Result is about another transaction: other ids (and receipt) than the request's. B2C: the
    # payout happens, only its Result names another one; status/balance: the subject is another's.
    "foreign_result": ("b2c", "status", "balance"),
    # A Transaction Status Result naming no OriginatorConversationID nor ConversationID (only the
    # receipt, amount and parties): taken as about the Occasion, so only its party can tell whose it is.
    "anonymous_result": ("status",),
}
# A synchronous answer about another request: STK Query answers (ResultCode 0 unless
# params.result_code) for another CheckoutRequestID and MerchantRequestID; B2C accepts the payment
# and answers with another OriginatorConversationID and ConversationID.
# `answer_lost`: the request is carried out, and its answer is lost on the way back (the client sees
# 500.003.1001, an unknown outcome for a money-moving call): the crash case of a Reversal, and an
# STK push whose CheckoutRequestID never reaches PenPay (its callback comes, naming an unknown id).
ANSWER_FAULTS: dict[str, tuple[str, ...]] = {
    "foreign_answer": ("stk_query", "b2c"),
    "answer_lost": ("stk", "reversal"),
}
# Pull Transactions answers a failed pull with HTTP 200 and ResponseCode 1001 (simulator/pull.py).
PULL_FAULTS: dict[str, tuple[str, ...]] = {"pull_failure": ("pull_query",)}
FAULT_KINDS = tuple(SYNC_FAULTS) + tuple(CALLBACK_FAULTS) + tuple(ANSWER_FAULTS) + tuple(PULL_FAULTS)


def _applies(kind: str, api: str) -> bool:
    return (
        kind in SYNC_FAULTS
        or api in CALLBACK_FAULTS.get(kind, ())
        or api in ANSWER_FAULTS.get(kind, ())
        or api in PULL_FAULTS.get(kind, ())
    )


@dataclass
class FaultRule:
    id: int
    kind: str
    api: str = "any"
    phone: str | None = None
    remaining: int | None = 1  # None: every matching request of the run
    probability: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)

    def matches(self, api: str, phone: str | None) -> bool:
        return (
            (self.api in ("any", api))
            and _applies(self.kind, api)
            and (self.phone is None or self.phone == phone)
        )


@dataclass
class OutcomeRule:
    id: int
    api: str  # stk | b2c
    result_code: int | str
    phone: str | None = None
    remaining: int | None = 1


@dataclass
class Plan:
    """The callback faults chosen for one request."""

    kinds: set[str] = field(default_factory=set)
    copies: int = 2
    delay: float | None = None

    def __contains__(self, kind: str) -> bool:
        return kind in self.kinds


class FaultBook:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._ids = itertools.count(1)
        self.faults: list[FaultRule] = []
        self.outcomes: list[OutcomeRule] = []

    def reset(self, rng: random.Random | None = None) -> None:
        if rng is not None:
            self._rng = rng
        self.faults.clear()
        self.outcomes.clear()

    def add_fault(self, spec: dict[str, Any]) -> FaultRule:
        kind = spec.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {list(FAULT_KINDS)}")
        api = spec.get("api", "any")
        if api != "any" and api not in APIS:
            raise ValueError(f"api must be 'any' or one of {list(APIS)}")
        if api != "any" and not _applies(kind, api):
            raise ValueError(f"fault {kind!r} does not apply to api {api!r}")
        remaining = spec.get("count", 1)
        if remaining is not None and (not isinstance(remaining, int) or remaining < 1):
            raise ValueError("count must be a positive integer or null (the whole run)")
        probability = float(spec.get("probability", 1.0))
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within 0..1")
        params = dict(spec.get("params") or {})
        for key in ("seconds", "copies"):
            if key in spec:
                params[key] = spec[key]
        rule = FaultRule(next(self._ids), kind, api, spec.get("phone"), remaining, probability, params)
        self.faults.append(rule)
        return rule

    def add_outcome(self, spec: dict[str, Any]) -> OutcomeRule:
        api = spec.get("api", "stk")
        if api not in ("stk", "b2c"):
            raise ValueError("api must be 'stk' or 'b2c'")
        if "result_code" not in spec:
            raise ValueError("result_code is required")
        remaining = spec.get("count", 1)
        if remaining is not None and (not isinstance(remaining, int) or remaining < 1):
            raise ValueError("count must be a positive integer or null (the whole run)")
        rule = OutcomeRule(
            next(self._ids), api, parse_code(spec["result_code"]), spec.get("phone"), remaining
        )
        self.outcomes.append(rule)
        return rule

    def _consume(self, rules: list[Any], rule: Any) -> None:
        if rule.remaining is not None:
            rule.remaining -= 1
            if rule.remaining <= 0:
                rules.remove(rule)

    def _fire(self, api: str, phone: str | None, kinds: Any) -> list[FaultRule]:
        fired = []
        for rule in list(self.faults):
            if rule.kind in kinds and rule.matches(api, phone):
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                fired.append(rule)
                self._consume(self.faults, rule)
        return fired

    def sync_fault(self, api: str, phone: str | None, phone_rules: bool) -> tuple[int, str, str] | None:
        if phone_rules and phone is not None and lab_fault(phone) in SYNC_FAULTS:
            return SYNC_FAULTS[lab_fault(phone) or ""]
        fired = self._fire(api, phone, SYNC_FAULTS)
        return SYNC_FAULTS[fired[0].kind] if fired else None

    def answer_fault(self, api: str, phone: str | None, kind: str = "foreign_answer") -> FaultRule | None:
        """The rule that makes this synchronous answer name another request (or, `answer_lost`, never
        arrive), if one fires."""
        fired = self._fire(api, phone, (kind,))
        return fired[0] if fired else None

    def pull_fault(self, api: str) -> FaultRule | None:
        """The rule that makes this Pull Transactions answer a failure (HTTP 200, 1001), if one fires."""
        fired = self._fire(api, None, PULL_FAULTS)
        return fired[0] if fired else None

    def plan(self, api: str, phone: str | None, phone_rules: bool) -> Plan:
        plan = Plan()
        if phone_rules and phone is not None:
            kind = lab_fault(phone)
            if kind is not None and _applies(kind, api) and kind not in SYNC_FAULTS:
                plan.kinds.add(kind)
        for rule in self._fire(api, phone, CALLBACK_FAULTS):
            plan.kinds.add(rule.kind)
            if "copies" in rule.params:
                plan.copies = max(2, int(rule.params["copies"]))
            if rule.kind == "delay":
                plan.delay = float(rule.params.get("seconds", 0.0))
        return plan

    def outcome_override(self, api: str, phone: str | None) -> int | str | None:
        for rule in list(self.outcomes):
            if rule.api == api and (rule.phone is None or rule.phone == phone):
                self._consume(self.outcomes, rule)
                return rule.result_code
        return None

    def public(self) -> dict[str, Any]:
        return {"faults": [asdict(r) for r in self.faults], "outcomes": [asdict(r) for r in self.outcomes]}


def lab_fault(phone: str) -> str | None:
    if len(phone) == 12 and phone[3:7] in ("7000", "1000"):
        return PHONE_FAULTS.get(phone[7])
    return None


def phone_outcome(api: str, phone: str) -> int | None:
    table = STK_PHONE_OUTCOMES if api == "stk" else B2C_PHONE_OUTCOMES
    return table.get(phone[-4:])


def draw_outcome(rng: random.Random, weights: dict[str, float]) -> int | str:
    """One draw per accepted request, always taken, so the schedule depends only on the seed."""
    point = rng.random()
    items = [(parse_code(k), float(v)) for k, v in weights.items() if float(v) > 0]
    total = sum(w for _, w in items)
    if not items or total <= 0:
        return 0
    acc = 0.0
    for code, weight in items:
        acc += weight / total
        if point < acc:
            return code
    return items[-1][0]
