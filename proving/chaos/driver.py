"""The traffic of a soak: each planned transaction, at its time, through the public gRPC API.

Before a transaction the driver sets up its scenario at the simulators, scoped to the user's
own phone so it touches no one else's payment: an M-Pesa outcome rule (cancelled push,
insufficient funds, B2C failure, ...) or a callback fault (duplicate, late, missing, reordered,
queue timeout, spike arrest). Deriv refusals come from the amounts (below the agent's minimum,
above the account's balance) and from a wrong withdrawal code. A user's transactions run one
after another (as one person's phone would), different users' concurrently.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from proving.chaos.client import Answer, ApiClient
from proving.chaos.population import SoakUser
from proving.chaos.schedule import PlannedTransaction

WRONG_CODE = "WRONG123"

# scenario -> (control endpoint, body without the phone)
_MPESA_SETUP: dict[str, tuple[str, dict[str, Any]]] = {
    "stk_cancelled": ("outcomes", {"api": "stk", "result_code": 1032}),
    "stk_insufficient_funds": ("outcomes", {"api": "stk", "result_code": 1}),
    "stk_timeout": ("outcomes", {"api": "stk", "result_code": 1037}),
    "stk_expired": ("outcomes", {"api": "stk", "result_code": 1019}),
    "stk_wrong_pin": ("outcomes", {"api": "stk", "result_code": 2001}),
    "callback_duplicate": ("faults", {"kind": "duplicate", "api": "stk", "copies": 2}),
    "callback_late": ("faults", {"kind": "late", "api": "stk"}),
    "callback_missing": ("faults", {"kind": "drop", "api": "stk"}),
    "callback_reordered": ("faults", {"kind": "out_of_order", "api": "stk"}),
    "stk_spike_arrest": ("faults", {"kind": "spike_arrest", "api": "stk"}),
    "stk_answer_lost": ("faults", {"kind": "answer_lost", "api": "stk"}),
    "b2c_queue_timeout": ("faults", {"kind": "queue_timeout", "api": "b2c"}),
    "b2c_result_duplicate": ("faults", {"kind": "duplicate", "api": "b2c", "copies": 2}),
    "b2c_result_missing": ("faults", {"kind": "drop", "api": "b2c"}),
    "b2c_spike_arrest": ("faults", {"kind": "spike_arrest", "api": "b2c"}),
}
_B2C_FAILURES = (2040, 2001)


@dataclass
class FlowRecord:
    index: int
    kind: str
    scenario: str
    user: int
    amount_cents: int
    initiated: str = "NOT_RUN"  # "OK" or the API's final status code
    transaction_id: str | None = None
    status_after_call: str | None = None
    confirmed: str | None = None  # withdrawals: "OK", a status code, or "NO_CODE"
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TrafficDriver:
    def __init__(
        self,
        api: ApiClient,
        users: list[SoakUser],
        *,
        deriv_control: str,
        mpesa_control: str,
        max_in_flight: int = 24,
    ) -> None:
        self.api = api
        self.users = users
        self.deriv_control = deriv_control.rstrip("/")
        self.mpesa_control = mpesa_control.rstrip("/")
        self._user_locks = [asyncio.Lock() for _ in users]
        self._gate = asyncio.Semaphore(max_in_flight)
        self.records: list[FlowRecord] = []
        self.setup_errors: Counter[str] = Counter()
        self._http: aiohttp.ClientSession | None = None

    async def run(self, traffic: tuple[PlannedTransaction, ...], started: float) -> list[FlowRecord]:
        """Start each transaction at `started + plan.at` (monotonic clock); wait for all."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            self._http = http
            tasks = []
            for plan in traffic:
                delay = started + plan.at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                record = FlowRecord(plan.index, plan.kind, plan.scenario, plan.user, plan.amount_cents)
                self.records.append(record)
                tasks.append(asyncio.create_task(self._flow(plan, record), name=f"chaos-tx-{plan.index}"))
            await asyncio.gather(*tasks)
        return self.records

    async def _flow(self, plan: PlannedTransaction, record: FlowRecord) -> None:
        user = self.users[plan.user]
        async with self._gate, self._user_locks[plan.user]:
            try:
                if plan.kind == "deposit":
                    await self._deposit(plan, user, record)
                else:
                    await self._withdrawal(plan, user, record)
            except Exception as error:
                record.note = f"driver error: {type(error).__name__}: {error}"

    async def _setup(self, plan: PlannedTransaction, user: SoakUser) -> None:
        if plan.scenario == "b2c_failed":
            endpoint, body = "outcomes", {"api": "b2c", "result_code": _B2C_FAILURES[plan.index % 2]}
        elif plan.scenario in _MPESA_SETUP:
            endpoint, body = _MPESA_SETUP[plan.scenario]
        else:
            return
        assert self._http is not None
        payload = {**body, "count": 1, "phone": user.plan.phone}
        async with self._http.post(f"{self.mpesa_control}/{endpoint}", json=payload) as response:
            if response.status >= 300:
                self.setup_errors[plan.scenario] += 1

    @staticmethod
    def _record(record: FlowRecord, answer: Answer) -> None:
        record.initiated = answer.code
        record.transaction_id = answer.transaction_id
        record.status_after_call = answer.status
        if not answer.ok:
            record.note = answer.message[:200]

    async def _deposit(self, plan: PlannedTransaction, user: SoakUser, record: FlowRecord) -> None:
        await self._setup(plan, user)
        self._record(record, await self.api.deposit(user, plan.amount_cents))

    async def _withdrawal(self, plan: PlannedTransaction, user: SoakUser, record: FlowRecord) -> None:
        await self._setup(plan, user)
        answer = await self.api.withdrawal(user, plan.amount_cents)
        self._record(record, answer)
        if not answer.ok or answer.transaction_id is None:
            return
        code = WRONG_CODE if plan.scenario == "wrong_code" else await self._code(user)
        if code is None:
            record.confirmed = "NO_CODE"
            return
        confirmed = await self.api.confirm(user, answer.transaction_id, code)
        record.confirmed = confirmed.code
        record.status_after_call = confirmed.status or record.status_after_call
        if not confirmed.ok:
            record.note = confirmed.message[:200]

    async def _code(self, user: SoakUser, wait: float = 30.0) -> str | None:
        """The active verification code Deriv mailed to the user (the initiation asked for it)."""
        assert self._http is not None
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            async with self._http.get(f"{self.deriv_control}/mailbox/{user.plan.loginid}") as response:
                if response.status == 200:
                    latest = (await response.json()).get("latest")
                    if latest:
                        return str(latest)
            await asyncio.sleep(0.5)
        return None

    def summary(self) -> dict[str, Any]:
        initiated = Counter(f"{r.kind}:{r.initiated}" for r in self.records)
        confirmed = Counter(r.confirmed for r in self.records if r.confirmed is not None)
        refusals = Counter(
            f"{r.kind} {r.initiated if r.initiated != 'OK' else r.confirmed}: {r.note[:90]}"
            for r in self.records
            if r.note
        )
        return {
            "planned": len(self.records),
            "initiated": dict(sorted(initiated.items())),
            "withdrawal_confirmations": dict(sorted(confirmed.items())),
            "client_retries": dict(sorted(self.api.retries.items())),
            "refusals": dict(refusals.most_common()),
            "scenario_setup_errors": dict(self.setup_errors),
        }
