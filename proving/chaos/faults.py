"""Injecting the scheduled faults, and a supervisor that starts again what died by itself.

Faults (proving.chaos.schedule.PlannedFault):
  kill             SIGKILL a PenPay process (the gateway leader resolved at that moment, or its
                   standby), keep it down `down` seconds, start it again
  redis_restart    SIGKILL the soak's private redis-server (nothing persisted), start it again
  mariadb_restart  SIGKILL the soak's private mariadbd, start it again (InnoDB recovery)
                   (a server given by URL is not ours to kill: every connection to it is cut
                   through a TcpCut proxy and new ones refused for the same time instead)
  ws_cut           the Deriv simulator drops every WebSocket (requests in flight are cut)
  deriv_rule       a Deriv simulator fault rule: drop before/after executing, delay, RateLimit,
                   Timeout (executed first), duplicate reply, on transfers or withdrawals
  rest_rule        a Deriv REST simulator fault rule on the REST users' transfers or withdrawals:
                   drop or 504 after executing, transient 500, pending settling later (complete,
                   rejected, failed), 429 with next_request_at, RequestIDUsed
  mpesa_rule       a Daraja simulator fault: spike arrest, duplicate/late/lost/reordered
                   callbacks, delay
  mpesa_foreign    a Daraja simulator answer about another request: an STK Query or B2C
                   answer, a B2C or Transaction Status result naming other ids
  paybill_unsolicited  money with no transaction: a customer pays the paybill with an account
                   number PenPay never issued and validation skipped; it must end in suspense
                   (not while the callbacks process is being killed: M-Pesa never resends it);
                   the first of a soak is paid again by a stranger, for the operator to refund

The supervisor plays the deployment's restart policy (docker-compose `restart: unless-stopped`):
a process that exits without being killed by a fault is started again, and counted as a crash
for the report.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from proving.chaos.schedule import PlannedFault
from proving.chaos.servers import PrivateMariaDB, PrivateRedis
from proving.chaos.tcpcut import TcpCut
from proving.cluster import Cluster, ManagedProcess

RESTART_TIMEOUT = 90.0
# A control call's time limit; how long the simulator is asked to drain its deliveries after a
# paybill payment (seconds)
CONTROL_SECONDS = 15.0
DRAIN_SECONDS = 30.0


@dataclass
class FaultRecord:
    index: int
    planned_at: float
    started_at: float | None = None
    kind: str = ""
    target: str = ""
    outcome: str = "not run"
    took: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultInjector:
    def __init__(
        self,
        cluster: Cluster,
        *,
        redis: PrivateRedis | None,
        mariadb: PrivateMariaDB | None,
        cuts: dict[str, TcpCut] | None = None,
    ) -> None:
        self.cluster = cluster
        self.redis = redis
        self.mariadb = mariadb
        # Servers the soak does not own are reached through a TcpCut instead: an outage is a cut.
        self.cuts = cuts or {}
        self.deriv_control = cluster.addresses["deriv_control"]
        self.mpesa_control = cluster.addresses["mpesa"] + "/__control__"
        self.deriv_rest_control = cluster.addresses["deriv_rest"] + "/__control__"
        self.records: list[FaultRecord] = []
        self.crashes: Counter[str] = Counter()
        self._held: set[str] = set()  # down on purpose: the supervisor leaves them alone
        self._stopping = asyncio.Event()
        self._http: aiohttp.ClientSession | None = None
        # A paybill confirmation is delivered once: no kill of the callbacks while one is under way.
        self._callbacks_in_use = asyncio.Lock()

    # --- the schedule ------------------------------------------------------------------------------

    async def run(self, faults: tuple[PlannedFault, ...], started: float) -> list[FaultRecord]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            self._http = http
            tasks = []
            for fault in faults:
                delay = started + fault.at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                record = FaultRecord(fault.index, fault.at, kind=fault.kind, target=fault.target)
                self.records.append(record)
                tasks.append(asyncio.create_task(self._strike(fault, record, started)))
            await asyncio.gather(*tasks)
            self._http = None
        return self.records

    async def _strike(self, fault: PlannedFault, record: FaultRecord, started: float) -> None:
        began = time.monotonic()
        record.started_at = round(began - started, 3)
        try:
            record.outcome = await self._apply(fault, record)
        except Exception as error:
            record.outcome = f"error: {type(error).__name__}: {error}"[:300]
        record.took = round(time.monotonic() - began, 3)

    async def _apply(self, fault: PlannedFault, record: FaultRecord) -> str:
        if fault.kind == "kill":
            name = await self._resolve(fault.target)
            record.target = name
            return await self._bounce(self.cluster.processes[name], fault.down)
        if fault.kind in ("redis_restart", "mariadb_restart"):
            server = self.redis if fault.kind == "redis_restart" else self.mariadb
            if server is not None:
                return await self._bounce(server.process, fault.down)
            cut = self.cuts.get(fault.target)
            if cut is None:
                return f"skipped: no way to interrupt {fault.target}"
            cut.cut(fault.down)
            await asyncio.sleep(fault.down)
            return f"cut every connection to {fault.target} for {fault.down:.1f}s (a server not ours)"
        if fault.kind == "ws_cut":
            return await self._post(f"{self.deriv_control}/connections/drop", {})
        if fault.kind == "deriv_rule":
            return await self._post(f"{self.deriv_control}/faults", fault.params)
        if fault.kind == "rest_rule":
            return await self._post(f"{self.deriv_rest_control}/faults", fault.params)
        if fault.kind in ("mpesa_rule", "mpesa_foreign"):
            return await self._post(f"{self.mpesa_control}/faults", fault.params)
        if fault.kind == "paybill_unsolicited":
            return await self._unsolicited_paybill(fault.params)
        return f"unknown fault kind {fault.kind}"

    async def _resolve(self, target: str) -> str:
        if target not in ("gateway-leader", "gateway-standby"):
            return target
        leader = await self.cluster.leading_gateway() or "gateway"
        if target == "gateway-leader":
            return leader
        return "gateway-standby" if leader == "gateway" else "gateway"

    async def _unsolicited_paybill(self, params: dict[str, Any]) -> str:
        async with self._callbacks_in_use:
            while "callbacks" in self._held:  # noqa: ASYNC110 - a restart under way: wait it out
                await asyncio.sleep(0.2)
            stranger = params.get("stranger_phone")
            body = {k: v for k, v in params.items() if k != "stranger_phone"} | {"validation": False}
            outcomes = [await self._post(f"{self.mpesa_control}/c2b/pay", body)]
            if stranger:  # the same again from a phone no user has: it can only be refunded
                outcomes.append(await self._post(f"{self.mpesa_control}/c2b/pay", body | {"phone": stranger}))
            # The drain waits for every delivery the simulator has pending, a "late" callback's 30 s
            # among them: the request may take that long, more than the other control calls' 15 s.
            await self._post(f"{self.mpesa_control}/drain", {"timeout": DRAIN_SECONDS}, DRAIN_SECONDS + 5)
        # One word for the report when every payment went through ("applied" is what counts as struck).
        return "applied" if set(outcomes) == {"applied"} else "; ".join(outcomes)

    async def _bounce(self, process: ManagedProcess, down: float) -> str:
        if process.name == "callbacks":
            async with self._callbacks_in_use:
                return await self._bounce_now(process, down)
        return await self._bounce_now(process, down)

    async def _bounce_now(self, process: ManagedProcess, down: float) -> str:
        if process.name in self._held:
            return f"skipped: {process.name} is already down"
        self._held.add(process.name)
        try:
            await process.kill()
            await asyncio.sleep(down)
            process.spawn()
            await process.wait_ready(RESTART_TIMEOUT)
        finally:
            self._held.discard(process.name)
        return f"killed {process.name}, restarted after {down:.1f}s"

    async def _post(self, url: str, body: dict[str, Any], seconds: float = CONTROL_SECONDS) -> str:
        assert self._http is not None
        async with self._http.post(url, json=body, timeout=aiohttp.ClientTimeout(total=seconds)) as response:
            text = await response.text()
            if response.status >= 300:
                return f"refused: HTTP {response.status} {text[:200]}"
        return "applied"

    # --- the supervisor ----------------------------------------------------------------------------

    def _supervised(self) -> list[ManagedProcess]:
        processes = list(self.cluster.processes.values())
        processes += [s.process for s in (self.redis, self.mariadb) if s is not None]
        return processes

    async def supervise(self, interval: float = 1.0) -> None:
        """Until stop_supervising(): start again every process that died by itself."""
        while not self._stopping.is_set():
            for process in self._supervised():
                if process.name in self._held or process.alive or process.popen is None:
                    continue
                self.crashes[process.name] += 1
                self._held.add(process.name)
                try:
                    process.spawn()
                    await process.wait_ready(RESTART_TIMEOUT)
                except Exception:
                    await asyncio.sleep(interval)
                finally:
                    self._held.discard(process.name)
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)
            except TimeoutError:
                pass

    def stop_supervising(self) -> None:
        self._stopping.set()

    # --- the end of the faults ---------------------------------------------------------------------

    async def rule_counters(self) -> dict[str, Any]:
        """How often the simulators' fault rules matched and fired (before they are cleared)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            async with http.get(f"{self.deriv_control}/faults") as response:
                deriv = await response.json()
            async with http.get(f"{self.deriv_rest_control}/faults") as response:
                deriv_rest = await response.json()
            async with http.get(f"{self.mpesa_control}/faults") as response:
                mpesa = await response.json()
        return {"deriv": deriv, "deriv_rest": deriv_rest, "mpesa": mpesa}

    async def clear_rules(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            async with http.delete(f"{self.deriv_control}/faults"):
                pass
            async with http.delete(f"{self.deriv_rest_control}/faults"):
                pass
            async with http.delete(f"{self.mpesa_control}/faults"):
                pass

    async def all_up(self, timeout: float = RESTART_TIMEOUT) -> None:  # noqa: ASYNC109
        for process in self._supervised():
            while process.name in self._held:  # noqa: ASYNC110 - a restart under way elsewhere
                await asyncio.sleep(0.2)
            if not process.alive:
                process.spawn()
            await process.wait_ready(timeout)
