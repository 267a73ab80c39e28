"""One chaos soak, start to verdict.

    async with ChaosSoak(SoakConfig(seed=7, transactions=200, duration=90, workdir=tmp)) as soak:
        report = await soak.run()          # traffic + faults, then settle, then the verdict
        ...                                # the cluster is still up here (tests corrupt it)
        again = await soak.verdict()       # the verdict read again

Order: private mariadbd + redis-server (URLs given instead: reached through a TcpCut proxy, so
their outages are cuts and the servers themselves are never touched) -> the Cluster with a standby
gateway -> the users -> traffic, faults and the supervisor together -> faults stopped (simulator
rules cleared, every process up) -> settle: wait, bounded, until no transaction is in flight
and the simulators have delivered every callback -> the report.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from proving.chaos.client import ApiClient
from proving.chaos.driver import TrafficDriver
from proving.chaos.faults import FaultInjector
from proving.chaos.population import AccessTokens, create_users, load_deriv_accounts, write_signing_key
from proving.chaos.report import SoakReport, build_report
from proving.chaos.schedule import CLUSTER_ENV, Schedule, build_schedule
from proving.chaos.servers import PrivateMariaDB, PrivateRedis
from proving.chaos.tcpcut import TcpCut
from proving.cluster import ROOT, Cluster, ClusterConfig

PROGRESS_EVERY = 15.0


@dataclass
class SoakConfig:
    seed: int
    transactions: int
    duration: float  # seconds of traffic and faults
    workdir: Path
    database_url: str | None = None  # None: a private mariadbd (restarted by the faults)
    redis_url: str | None = None  # None: a private redis-server (restarted by the faults)
    settle_timeout: float = 240.0  # after the faults: at most this long for in-flight work to end
    workers: int = 2
    late_callback_delay: float = 8.0
    # Longer than the soak's outages (a server down 1-4 s, then recovering): a worker holding a
    # call's answer through an outage stores it before others take it for lost (production: 30 s).
    call_grace: float = 15.0
    # After settling: a scripted operator resolves every NEEDS_REVIEW through the review API.
    review: bool = True


class ChaosSoak:
    def __init__(self, config: SoakConfig, *, say: Callable[[str], None] = print) -> None:
        self.config = config
        self.say = say
        self.schedule: Schedule = build_schedule(config.seed, config.transactions, config.duration)
        self.mariadb: PrivateMariaDB | None = None
        self.redis: PrivateRedis | None = None
        self.cluster: Cluster | None = None
        self.cuts: dict[str, TcpCut] = {}
        self.database_url = config.database_url or ""
        self.driver: TrafficDriver | None = None
        self.injector: FaultInjector | None = None
        self.timings: dict[str, float] = {}
        self.settled = False
        self._clock0 = time.monotonic()

    # --- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> ChaosSoak:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _start(self) -> None:
        c = self.config
        c.workdir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        if c.database_url is None:
            self.mariadb = PrivateMariaDB(c.workdir)
            await self.mariadb.start()
            self.database_url = self.mariadb.url
        else:
            self.database_url = await self._through_cut("mariadb", c.database_url)
        if c.redis_url is None:
            self.redis = PrivateRedis(c.workdir)
            await self.redis.start()
            redis_url = self.redis.url
        else:
            redis_url = await self._through_cut("redis", c.redis_url)
        key, jwt_env = write_signing_key(c.workdir)
        self.signing_key = key
        self.cluster = Cluster(
            ClusterConfig(
                database_url=self.database_url,
                redis_url=redis_url,
                workdir=c.workdir,
                seed=c.seed,
                workers=c.workers,
                standby_gateway=True,
                mpesa_callback_delay=0.3,
                mpesa_sim_args=("--late-delay", str(c.late_callback_delay)),
                env={**jwt_env, **CLUSTER_ENV, "PENPAY_SAGA_CALL_GRACE": str(c.call_grace)},
                start_timeout=90.0,
            )
        )
        await self.cluster.start()
        self.timings["start"] = time.monotonic() - began
        self.say(f"cluster up in {self.timings['start']:.1f}s ({', '.join(self.cluster.processes)})")

        began = time.monotonic()
        plans = self.schedule.users
        await load_deriv_accounts(
            self.cluster.addresses["deriv_control"], plans, c.seed, self.cluster.addresses["deriv_rest"]
        )
        self.users = await create_users(self.database_url, plans, c.seed)
        self.tokens = AccessTokens(key)
        self.timings["users"] = time.monotonic() - began
        self.say(f"{len(self.users)} users seeded in {self.timings['users']:.1f}s")

    async def _through_cut(self, name: str, url: str) -> str:
        """The URL of a server not ours, rewritten to reach it through a TcpCut we can cut."""
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        cut = TcpCut(parsed.host or "127.0.0.1", parsed.port or (3306 if name == "mariadb" else 6379))
        await cut.start()
        self.cuts[name] = cut
        return parsed.set(host="127.0.0.1", port=cut.port).render_as_string(hide_password=False)

    async def close(self) -> None:
        if self.cluster is not None:
            await self.cluster.stop()
        for cut in self.cuts.values():
            await cut.stop()
        for server in (self.redis, self.mariadb):
            if server is not None:
                await server.stop()

    # --- the run -----------------------------------------------------------------------------------

    async def run(self) -> SoakReport:
        assert self.cluster is not None
        cluster = self.cluster
        api = ApiClient(cluster.addresses["grpc"], self.tokens)
        self.driver = TrafficDriver(
            api,
            self.users,
            deriv_control=cluster.addresses["deriv_control"],
            mpesa_control=cluster.addresses["mpesa"] + "/__control__",
        )
        self.injector = FaultInjector(cluster, redis=self.redis, mariadb=self.mariadb, cuts=self.cuts)
        supervisor = asyncio.create_task(self.injector.supervise())
        progress = asyncio.create_task(self._progress())
        began = time.monotonic()
        started = began + 0.5
        self.window_start = datetime.now(UTC) - timedelta(minutes=1)
        try:
            await asyncio.gather(
                self.driver.run(self.schedule.traffic, started),
                self.injector.run(self.schedule.faults, started),
            )
            self.timings["traffic_and_faults"] = time.monotonic() - began
            self.say(f"traffic and faults done in {self.timings['traffic_and_faults']:.1f}s")

            began = time.monotonic()
            self.rule_counters = await self.injector.rule_counters()
            await self.injector.clear_rules()
            await self.injector.all_up()
            self.settled = await self._settle()
            self.timings["settle"] = time.monotonic() - began
            self.say(f"settled={self.settled} in {self.timings['settle']:.1f}s")
            if self.config.review:
                await self._review(api)
        finally:
            progress.cancel()
            self.injector.stop_supervising()
            await supervisor
            await api.close()
        return await self.verdict()

    async def _review(self, api: ApiClient) -> None:
        """Every NEEDS_REVIEW through the review API, and every paybill payment in suspense that a
        soak user paid: one staff identity proposes, another approves."""
        from proving.chaos.operator import ScriptedOperator

        assert self.cluster is not None
        began = time.monotonic()
        by_phone = {u.plan.phone: u for u in self.users}

        async def reference_of(phone: str) -> str | None:
            # what the user would show support: the reference their app gives them
            user = by_phone.get(phone)
            return None if user is None else await api.paybill_reference(user)

        operator = ScriptedOperator(
            self.cluster.addresses["grpc"],
            self.signing_key,
            deriv_control=self.cluster.addresses["deriv_control"],
            mpesa_control=self.cluster.addresses["mpesa"] + "/__control__",
            in_flight=self._in_flight,
            user_phones=frozenset(by_phone),
            reference_of=reference_of,
            say=self.say,
        )
        self.operator_report = await operator.run(settle_timeout=self.config.settle_timeout / 2)
        await self._settle()  # refunds and retries end in the sagas
        self.timings["review"] = time.monotonic() - began
        self.say(f"review queue worked in {self.timings['review']:.1f}s: {self.operator_report.to_dict()}")

    async def _reconcile(self) -> dict[str, Any]:
        """`penpay reconcile run` over the soak's window, as an operator would run it: Deriv's statement
        and balance through the gateway, M-Pesa's Pull Transactions, Transaction Status and Account
        Balance over Daraja; no control API."""
        assert self.cluster is not None
        start = getattr(self, "window_start", None)
        if start is None:
            return {}
        end = datetime.now(UTC) + timedelta(seconds=1)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "penpay",
            "reconcile",
            "run",
            "--json",
            "--from",
            start.isoformat(),
            "--to",
            end.isoformat(),
            # the cluster's own code: from another directory, `-m penpay` could import another checkout
            cwd=ROOT,
            env=self.cluster.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        try:
            result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            tail = err.decode(errors="replace").strip().splitlines()[-3:]
            return {"status": "FAILED", "error": f"exit {process.returncode}: {' | '.join(tail)}"}
        self.say(f"reconciliation: {result.get('status')}, {result.get('unexplained')} unexplained")
        return result

    async def _in_flight(self) -> dict[str, int]:
        from sqlalchemy import func, select

        from domain.payments.status import TERMINAL_STATUSES, TransactionStatus
        from persistence.engine import create_engine
        from persistence.tables import transactions

        done = [s.value for s in TERMINAL_STATUSES] + [TransactionStatus.NEEDS_REVIEW.value]
        engine = create_engine(self.database_url, pool_size=1)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    select(transactions.c.status, func.count())
                    .where(transactions.c.status.not_in(done))
                    .group_by(transactions.c.status)
                )
                return {str(status): int(count) for status, count in rows}
        finally:
            await engine.dispose()

    async def _settle(self) -> bool:
        """Bounded: until nothing is in flight and the M-Pesa simulator has sent every callback."""
        import aiohttp

        assert self.cluster is not None
        deadline = time.monotonic() + self.config.settle_timeout
        drain = f"{self.cluster.addresses['mpesa']}/__control__/drain"
        while time.monotonic() < deadline:
            try:
                in_flight = await self._in_flight()
            except Exception as error:
                self.say(f"settle: cannot read the database yet ({type(error).__name__})")
                in_flight = {"?": 1}
            if not in_flight:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                    async with http.post(drain):
                        pass
                await asyncio.sleep(2.0)  # a late duplicate just delivered is handled
                if not await self._in_flight():
                    return True
            await asyncio.sleep(2.0)
        self.say(f"settle timed out after {self.config.settle_timeout:.0f}s: {await self._in_flight()}")
        return False

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            done = sum(1 for r in (self.driver.records if self.driver else []) if r.initiated != "NOT_RUN")
            faults = len(self.injector.records) if self.injector else 0
            try:
                in_flight = await self._in_flight()
            except Exception as error:
                in_flight = {"unreadable": 0, type(error).__name__: 0}
            self.say(
                f"t+{time.monotonic() - self._clock0:.0f}s flows {done}/{len(self.schedule.traffic)} "
                f"faults {faults}/{len(self.schedule.faults)} in flight {in_flight}"
            )

    # --- the verdict ------------------------------------------------------------------------------

    async def verdict(self) -> SoakReport:
        assert self.cluster is not None
        outcomes = {
            r.transaction_id: f"{r.kind}:{r.scenario}"
            for r in (self.driver.records if self.driver else [])
            if r.transaction_id
        }
        operator = getattr(self, "operator_report", None)
        if operator is not None:  # what the paybill payments the operator assigned became
            outcomes.update((tx, "paybill:unsolicited") for tx in operator.paybill.deposits)
        # Reconciliation first, as an operator closes the day: money M-Pesa holds that PenPay never
        # heard of (a confirmation lost with the callbacks process) is booked to suspense by it, and
        # the consistency check then finds it explained there.
        reconciliation = await self._reconcile()
        report = await build_report(
            self.database_url,
            seed=self.config.seed,
            schedule_fingerprint=self.schedule.fingerprint(),
            deriv_control=self.cluster.addresses["deriv_control"],
            mpesa_control=self.cluster.addresses["mpesa"],
            deriv_opening_balance_cents=self.cluster.config.float_usd_cents,
            outcomes_of=outcomes,
        )
        report.reconciliation = reconciliation
        report.timings = {k: round(v, 1) for k, v in self.timings.items()}
        report.settled = self.settled
        if self.driver is not None:
            report.driver = self.driver.summary()
        if self.injector is not None:
            report.faults = [f.to_dict() for f in self.injector.records]
            report.crashes = dict(self.injector.crashes)
            report.rule_counters = getattr(self, "rule_counters", {})
        if operator is not None:
            report.review = operator.to_dict()
        return report
