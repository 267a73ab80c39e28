"""The seeded plan of a chaos soak: who moves what money when, and which fault strikes when.

`build_schedule(seed, transactions, duration)` is pure: the same arguments give the same
Schedule (same users, same traffic, same faults at the same offsets), so a failing soak can be
replayed from its seed. Nothing here reads the clock or the network; `Schedule.lines()` prints it.

Times are seconds after the traffic starts. Traffic arrives over the first TRAFFIC_SHARE of the
duration; faults strike within [FAULT_START, FAULT_END] of it, so the tail of the run is quiet
enough to settle. Every fault kind appears at least once; more strike as the run grows longer.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any

TRAFFIC_SHARE = 0.8
FAULT_START, FAULT_END = 0.04, 0.85
# Compliance allows 5 transactions per user and hour: plan at most this many per user.
TX_PER_USER = 4
# One extra fault for this many seconds of run, beyond one of each kind.
SECONDS_PER_EXTRA_FAULT = 6.0

# Deposit scenarios: (name, weight). The M-Pesa ones are set up through the simulator's control
# API for the user's phone just before the deposit (outcome rules and callback faults).
DEPOSIT_SCENARIOS: tuple[tuple[str, int], ...] = (
    ("ok", 44),
    ("stk_cancelled", 4),  # ResultCode 1032
    ("stk_insufficient_funds", 3),  # 1
    ("stk_timeout", 3),  # 1037: the phone never answered
    ("stk_expired", 2),  # 1019
    ("stk_wrong_pin", 2),  # 2001
    ("callback_duplicate", 4),
    ("callback_late", 3),
    ("callback_missing", 3),
    ("callback_reordered", 3),
    ("stk_spike_arrest", 2),  # the push answered 500.003.02 Spike Arrest
    # the push carried out and answered 500.003.1001: its CheckoutRequestID is found again in
    # M-Pesa's records (Pull Transactions, the parked callback), by the saga or by two people
    ("stk_answer_lost", 2),
    ("deriv_refused", 2),  # converts below the agent's USD 10 minimum: Deriv refuses the transfer
)
WITHDRAWAL_SCENARIOS: tuple[tuple[str, int], ...] = (
    ("ok", 26),
    ("wrong_code", 3),  # Deriv refuses the debit: InvalidToken
    ("deriv_below_minimum", 2),  # USD 5: Deriv refuses the debit
    ("deriv_over_balance", 2),  # more than the Deriv account holds
    ("b2c_failed", 3),  # B2C ResultCode 2040 / 2001: USD refunded, REVERSED
    ("b2c_queue_timeout", 3),  # the money moves, only QueueTimeOutURL is called
    ("b2c_result_duplicate", 2),
    ("b2c_result_missing", 2),
    ("b2c_spike_arrest", 1),
)
DEPOSIT_SHARE = 0.6
# PenPay refuses at initiation what Deriv would refuse by amount (PENPAY_DERIV_TRANSFER_MIN_USD,
# USD 10 by default). The soak's cluster lowers PenPay's minimum to USD 1 while the simulator's
# agent keeps its USD 10: "deriv_refused" and "deriv_below_minimum" pass PenPay's check and still
# meet Deriv's own refusal, the path a payment takes when the agent's limits change at Deriv.
CLUSTER_ENV = {"PENPAY_DERIV_TRANSFER_MIN_USD": "1"}

# Fault kinds and their targets. "kill" = SIGKILL, down for a while, start again.
KILL_TARGETS = ("worker-1", "worker-2", "relay", "gateway-leader", "gateway-standby", "api", "callbacks")
DERIV_RULES = ("drop_before", "drop_after", "delay", "rate_limit", "timeout", "duplicate")
DERIV_CALLS = ("paymentagent_transfer", "paymentagent_withdraw")
MPESA_RULES = ("spike_arrest", "duplicate", "late", "drop", "out_of_order", "delay")
# Daraja answering about another request than the one asked (simulator faults foreign_answer /
# foreign_result): the payment it holds must wait for a correct answer, never be paid or failed on it.
MPESA_FOREIGN = (
    ("foreign_answer", "stk_query"),
    ("foreign_answer", "b2c"),
    ("foreign_result", "b2c"),
    ("foreign_result", "status"),
)
# Deriv REST simulator fault rules (deriv_gateway/simulator/rest/faults.py) on the REST users' money
# calls: executed then the answer lost (drop) or a 504, a transient 500 (not executed), `pending`
# that settles later to each outcome, 429 with next_request_at, RequestIDUsed (executed, a retry's
# answer seen). Every one must end as exactly one transfer or withdrawal, or none, never two.
REST_RULES = ("drop_after", "timeout_after", "transient_500", "pending", "rate_limit", "request_id_used")
REST_ENDPOINTS = ("transfer", "withdraw")
REST_SETTLEMENTS = ("complete", "rejected", "failed")
FAULT_KINDS = (
    "kill",
    "ws_cut",
    "deriv_rule",
    "rest_rule",
    "mpesa_rule",
    "mpesa_foreign",
    "redis_restart",
    "mariadb_restart",
    "paybill_unsolicited",
)

USER_DERIV_BALANCE_CENTS = 1_000_00
FIRST_LOGINID = 91_000_000


@dataclass(frozen=True, slots=True)
class PlannedUser:
    index: int
    loginid: str  # the user's own simulated Deriv account
    phone: str  # the user's own M-Pesa phone (no magic suffix: outcomes are set per request)
    client_ip: str  # the address the API sees (x-forwarded-for), for its per-IP rate limits
    # Moved to Deriv's new API: bound to the account's nickname, paid over the REST transport.
    rest: bool = False


@dataclass(frozen=True, slots=True)
class PlannedTransaction:
    index: int
    at: float
    kind: str  # "deposit" | "withdrawal"
    scenario: str
    user: int
    amount_cents: int  # KES cents for a deposit, USD cents for a withdrawal


@dataclass(frozen=True, slots=True)
class PlannedFault:
    index: int
    at: float
    kind: str  # one of FAULT_KINDS
    target: str
    down: float = 0.0  # seconds a killed process or server stays down
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        extra = f" down {self.down:.1f}s" if self.down else ""
        args = f" {json.dumps(self.params, sort_keys=True)}" if self.params else ""
        return f"{self.kind} {self.target}{extra}{args}"


@dataclass(frozen=True, slots=True)
class Schedule:
    seed: int
    transactions: int
    duration: float
    users: tuple[PlannedUser, ...]
    traffic: tuple[PlannedTransaction, ...]
    faults: tuple[PlannedFault, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def scenario_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for tx in self.traffic:
            key = f"{tx.kind}:{tx.scenario}"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))

    def lines(self, *, traffic: bool = False) -> list[str]:
        out = [
            f"chaos schedule seed={self.seed} transactions={self.transactions} "
            f"duration={self.duration:g}s users={len(self.users)} fingerprint={self.fingerprint()}",
            "traffic mix:",
        ]
        out += [f"  {name}: {count}" for name, count in self.scenario_counts().items()]
        out.append(f"faults ({len(self.faults)}):")
        out += [f"  t+{f.at:7.2f}s  {f.describe()}" for f in self.faults]
        if traffic:
            out.append("transactions:")
            out += [
                f"  t+{t.at:7.2f}s  #{t.index} {t.kind} {t.scenario} user {t.user} {t.amount_cents}"
                for t in self.traffic
            ]
        return out


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    names = [name for name, _ in table]
    weights = [weight for _, weight in table]
    return rng.choices(names, weights=weights, k=1)[0]


def _users(rng: random.Random, count: int) -> tuple[PlannedUser, ...]:
    # Unique phones 2547BBBBSSSS: BBBB >= 1000 keeps them out of the simulator's lab range
    # (2547000...), SSSS in 5000-5999 is no result code: each request's outcome is set explicitly.
    base = rng.randrange(1_000, 9_000 - count // 1_000)
    return tuple(
        PlannedUser(
            index=index,
            loginid=f"CR{FIRST_LOGINID + index}",
            phone=f"2547{base + index // 1_000:04d}{5_000 + index % 1_000:04d}",
            client_ip=f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}",
            rest=index % 2 == 1,  # a mix: every other user is on Deriv's new (REST) API
        )
        for index in range(count)
    )


def _amount(rng: random.Random, kind: str, scenario: str) -> int:
    if kind == "deposit":
        if scenario == "deriv_refused":
            return 1_000_00  # KES 1,000 = USD 7.69 < the agent's USD 10 minimum
        return rng.randrange(1_400, 6_001, 10) * 100  # KES 1,400 .. 6,000: USD 10.76 .. 46.15
    if scenario == "deriv_below_minimum":
        return 5_00
    if scenario == "deriv_over_balance":
        return 1_900_00  # the account holds USD 1,000 plus a few deposits (KES 243,200 < M-Pesa max)
    return rng.randrange(10_00, 60_01, 25)


def _traffic(
    rng: random.Random, transactions: int, window: float, users: int
) -> tuple[PlannedTransaction, ...]:
    planned = []
    step = window / max(transactions, 1)
    for index in range(transactions):
        kind = "deposit" if rng.random() < DEPOSIT_SHARE else "withdrawal"
        scenario = _weighted(rng, DEPOSIT_SCENARIOS if kind == "deposit" else WITHDRAWAL_SCENARIOS)
        at = round(index * step + rng.uniform(0, step * 0.9), 3)
        # Round robin: a user's transactions are a quarter of the window apart.
        planned.append(
            PlannedTransaction(index, at, kind, scenario, index % users, _amount(rng, kind, scenario))
        )
    return tuple(planned)


def _fault(rng: random.Random, kind: str) -> tuple[str, float, dict[str, Any]]:
    if kind == "kill":
        return rng.choice(KILL_TARGETS), round(rng.uniform(0.5, 4.0), 2), {}
    if kind == "ws_cut":
        return "deriv-websockets", 0.0, {}
    if kind == "deriv_rule":
        rule = rng.choice(DERIV_RULES)
        params: dict[str, Any] = {"kind": rule, "call": rng.choice(DERIV_CALLS), "times": rng.randint(1, 3)}
        if rule in ("delay", "timeout"):
            params["delay"] = round(rng.uniform(0.5, 3.0), 2)
        return "deriv-sim", 0.0, params
    if kind == "rest_rule":
        rule = rng.choice(REST_RULES)
        params = {"kind": rule, "endpoint": rng.choice(REST_ENDPOINTS), "times": rng.randint(1, 3)}
        if rule == "pending":  # settle_to: set in turn by _faults
            params["settle_after"] = round(rng.uniform(1.0, 8.0), 2)
        if rule == "rate_limit":
            params["retry_in"] = rng.randint(1, 5)  # seconds to next_request_at
        return "deriv-rest-sim", 0.0, params
    if kind == "mpesa_rule":
        rule = rng.choice(MPESA_RULES)
        params = {"kind": rule, "api": rng.choice(("stk", "b2c")), "count": rng.randint(1, 3)}
        if rule == "delay":
            params["seconds"] = round(rng.uniform(0.5, 3.0), 2)
        return "mpesa-sim", 0.0, params
    if kind == "mpesa_foreign":
        rule, api = rng.choice(MPESA_FOREIGN)
        return "mpesa-sim", 0.0, {"kind": rule, "api": api, "count": rng.randint(1, 3)}
    if kind == "paybill_unsolicited":
        # Money arrives with no transaction: a customer pays the paybill with an account number
        # PenPay never issued, and M-Pesa skips validation. It must end in suspense, for a person
        # (the payer's phone is set by _paid_by_users, without a draw).
        account = f"UNKNOWN{rng.randrange(10**6):06d}"
        return "mpesa-sim", 0.0, {"amount": rng.randrange(100, 5_001, 50), "account": account}
    if kind == "redis_restart":
        return "redis", round(rng.uniform(1.0, 4.0), 2), {}
    return "mariadb", round(rng.uniform(1.0, 4.0), 2), {}


def _faults(rng: random.Random, duration: float) -> tuple[PlannedFault, ...]:
    start, end = duration * FAULT_START, duration * FAULT_END
    extra = max(0, math.floor(duration / SECONDS_PER_EXTRA_FAULT) - len(FAULT_KINDS))
    kinds = list(FAULT_KINDS)
    # The gateway leader is killed at least once, whatever the draw.
    kinds.append("kill-gateway-leader")
    weights = {
        "kill": 5,
        "ws_cut": 2,
        "deriv_rule": 4,
        "rest_rule": 4,
        "mpesa_rule": 3,
        "mpesa_foreign": 2,
        "redis_restart": 1,
        "mariadb_restart": 1,
        "paybill_unsolicited": 1,
    }
    kinds += rng.choices(list(weights), weights=list(weights.values()), k=extra)
    times = sorted(rng.uniform(start, end) for _ in kinds)
    rng.shuffle(kinds)
    # Server restarts apart from each other: one outage heals before the next begins.
    faults: list[PlannedFault] = []
    last_outage = -math.inf
    pendings = 0
    for kind, at in zip(kinds, times, strict=True):
        if kind in ("redis_restart", "mariadb_restart"):
            at = max(at, last_outage + 12.0)
            last_outage = at
        if kind == "kill-gateway-leader":
            target, down = "gateway-leader", round(rng.uniform(0.5, 3.0), 2)
            params: dict[str, Any] = {}
            kind = "kill"
        else:
            target, down, params = _fault(rng, kind)
        if params.get("kind") == "pending" and kind == "rest_rule":
            # each outcome in turn, so a soak with three pending rules meets them all
            params["settle_to"] = REST_SETTLEMENTS[pendings % len(REST_SETTLEMENTS)]
            pendings += 1
        faults.append(PlannedFault(0, round(at, 3), kind, target, down, params))
    faults.sort(key=lambda f: (f.at, f.kind, f.target))
    return tuple(PlannedFault(i, f.at, f.kind, f.target, f.down, f.params) for i, f in enumerate(faults))


def _paid_by_users(
    faults: tuple[PlannedFault, ...], users: tuple[PlannedUser, ...]
) -> tuple[PlannedFault, ...]:
    """An unsolicited paybill payment comes from a soak user's phone, so the scripted operator can
    find whose money it is. The first one of a soak is paid a second time by a stranger (a phone no
    soak user has): that payment cannot be assigned, so the operator gives it back by Reversal. The
    payers follow from the account number already drawn: no extra draw, so every other fault, time
    and transaction stays as the seed gave it before."""
    out: list[PlannedFault] = []
    stranger_planned = False
    for f in faults:
        if f.kind == "paybill_unsolicited":
            drawn = int(f.params["account"][-6:])
            params = {**f.params, "phone": users[drawn % len(users)].phone}
            if not stranger_planned:
                params["stranger_phone"] = stranger_phone(drawn)
                stranger_planned = True
            f = replace(f, params=params)
        out.append(f)
    return tuple(out)


def stranger_phone(drawn: int) -> str:
    """A Kenyan MSISDN no soak user has (users' are 2547...; this is 2541 1...)."""
    return f"25411{drawn % 10**7:07d}"


def users_needed(transactions: int) -> int:
    return max(4, math.ceil(transactions / TX_PER_USER))


def build_schedule(seed: int, transactions: int, duration: float) -> Schedule:
    if transactions < 1:
        raise ValueError("a soak needs at least one transaction")
    if duration <= 0:
        raise ValueError("the duration must be positive")
    rng = random.Random(f"penpay-chaos:{seed}")
    users = _users(random.Random(f"penpay-chaos:{seed}:users"), users_needed(transactions))
    traffic = _traffic(rng, transactions, duration * TRAFFIC_SHARE, len(users))
    faults = _paid_by_users(_faults(random.Random(f"penpay-chaos:{seed}:faults"), duration), users)
    return Schedule(seed, transactions, float(duration), users, traffic, faults)
