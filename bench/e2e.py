"""End to end on the multi-process cluster (proving/cluster.py): MariaDB + Redis, both simulators at
zero delay, and every PenPay process on its own (api, http, gateway, callbacks, relay, 2 saga workers).

Phases, one cluster:
1. rate-limit burst: the Deriv simulator's call limits set to `BURST_LIMIT_PER_MINUTE` (below what
   the cluster completes here, so a burst larger than a minute's allowance waits on the limit) and
   the gateway's socket dropped so it reads website_status again; B deposits at once; then the
   simulator's own count of RateLimit answers it gave is read (the goal: none). First, while
   Deriv's limit window is fresh (lowering the limit after the other phases' calls would find the
   window full already).
2. deposits: D deposits initiated through gRPC, 16 in flight; the InitiateDeposit latency is the
   caller's; completion is read from the database (transactions.updated_at of the COMPLETED row), so
   nothing polls the API. deposits/s = completed / (last completion - first initiation).
3. withdrawals: W withdrawals (InitiateWithdrawal, the code from the Deriv simulator's mailbox,
   ConfirmWithdrawal), 16 in flight, measured the same way.
In phases 2 and 3 the simulator's limits are lifted, so the figures measure PenPay, not Deriv's limits.
The CPU each cluster process spent in phases 2 and 3, per completed transaction, says where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.load import Sample, counted
from bench.results import Figure, Goal, Results
from bench.users import DEPOSITS_PER_USER, BenchUser, fund_agent, make_users, payer_phone

GROUP = "e2e"
CONCURRENCY = 16
BURST_LIMIT_PER_MINUTE = 180  # Deriv's own general limit; binds once a burst exceeds a minute's (x 0.9)
NO_LIMITS = {
    "general_minutely": 10**8,
    "general_hourly": 10**9,
    "outcome_minutely": 10**8,
    "outcome_hourly": 10**9,
}
FAST_ARGON2 = {  # registering the bench's users is set-up, not what is measured
    "PENPAY_ARGON2_TIME_COST": "1",
    "PENPAY_ARGON2_MEMORY_KIB": "1024",
    "PENPAY_ARGON2_PARALLELISM": "1",
}
FINAL = ("COMPLETED", "FAILED", "REVERSED", "NEEDS_REVIEW")


def sizes(args: argparse.Namespace) -> tuple[int, int, int]:
    """(deposits, withdrawals, burst deposits)"""
    deposits, withdrawals, burst = (30, 10, 20) if args.quick else (200, 50, 100)
    deposits = getattr(args, "deposits", None) or deposits
    withdrawals = getattr(args, "withdrawals", None) or withdrawals
    return deposits, withdrawals, getattr(args, "burst", None) or burst


def _log(started: float, what: str) -> None:
    print(f"  e2e: {what} ({time.monotonic() - started:.0f} s)", flush=True)


async def _sim_limits(control: str, limits: dict[str, int], cluster: Any) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.post(f"{control}/config", json={"rate_limits": limits}) as r:
            r.raise_for_status()
        async with http.post(f"{control}/connections/drop", json={}) as r:
            r.raise_for_status()
    await asyncio.sleep(0.5)
    await cluster.wait_for_gateway_leader(30)


@dataclass(frozen=True)
class Outcome:
    status: str
    created: float  # epoch seconds
    updated: float  # the last update: for a COMPLETED row, when it completed
    reason: str | None = None  # failure_reason, for the note

    @property
    def seconds(self) -> float:
        return self.updated - self.created


async def _outcomes(url: str, kind: str, since: datetime) -> list[Outcome]:
    """The transactions of `kind` created since `since`, read from the database."""
    from sqlalchemy import select

    from persistence.tables import transactions as t

    async with _engine(url).connect() as connection:
        rows = (
            await connection.execute(
                select(t.c.status, t.c.created_at, t.c.updated_at, t.c.failure_reason).where(
                    t.c.type == kind, t.c.created_at >= since
                )
            )
        ).all()
    return [
        Outcome(r.status, r.created_at.timestamp(), r.updated_at.timestamp(), r.failure_reason) for r in rows
    ]


def _reasons(rows: list[Outcome]) -> str:
    """The most frequent failure reasons of the rows that did not complete."""
    counts: dict[str, int] = {}
    for o in rows:
        if o.status != "COMPLETED" and o.reason:
            counts[o.reason[:80]] = counts.get(o.reason[:80], 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:2]
    return "; why: " + "; ".join(f"{n} x {reason}" for reason, n in top) if top else ""


_engines: dict[str, Any] = {}


def _engine(url: str) -> Any:
    """One small engine per database for the polls (disposed with the scratch database)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    if url not in _engines:
        # no ping and no reset ROLLBACK per poll: the bench's own statements stay out of the
        # per-deposit counts whatever the product's engine settings are
        _engines[url] = create_async_engine(url, pool_size=1, pool_pre_ping=False, pool_reset_on_return=None)
    return _engines[url]


async def _dispose_engine(url: str) -> None:
    engine = _engines.pop(url, None)
    if engine is not None:
        await engine.dispose()


async def _wait_final(url: str, kind: str, since: datetime, count: int, timeout: float) -> list[Outcome]:
    """Poll the database (not the API) until `count` transactions are final, or `timeout` passed."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await _outcomes(url, kind, since)
        if sum(1 for o in rows if o.status in FINAL) >= count or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.5)


async def _wait_notices(url: str, group: str, since: datetime, count: int, timeout: float = 15.0) -> None:
    """Wait until the payment notices of `count` final transactions are handled (each is an inbox
    row of the notice group), or `timeout` passed: a notice is part of what a payment costs, and
    without this wait it fell inside or after the measured window by chance."""
    from sqlalchemy import func, select

    from persistence.tables import processed_events as p

    query = select(func.count()).select_from(p).where(p.c.consumer == group, p.c.processed_at >= since)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with _engine(url).connect() as connection:
            if int((await connection.execute(query)).scalar_one()) >= count:
                return
        await asyncio.sleep(0.5)  # as _wait_final: its reads count in the window


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _completion_figures(
    results: Results,
    label: str,
    rows: list[Outcome],
    started: float,
    initiated: int,
    goal: Goal | None,
    baseline: str | None,
    cpu_seconds: dict[str, float] | None = None,
    sql: str = "",
) -> None:
    """Completed per second from the phase's first initiation to its last completion, and the
    initiation-to-completed latencies, from the rows' own timestamps; `cpu_seconds`: CPU each
    process spent in the phase (shown per completed transaction: where the time goes)."""
    done = [o for o in rows if o.status == "COMPLETED"]
    cpu = {name: round(sec * 1000 / max(len(done), 1), 2) for name, sec in (cpu_seconds or {}).items()}
    others: dict[str, int] = {}
    for o in rows:
        if o.status != "COMPLETED":
            others[o.status] = others.get(o.status, 0) + 1
    span = max(o.updated for o in done) - started if done else None
    seconds = [o.seconds for o in done]
    results.add(
        Figure(
            group=GROUP,
            name=f"{label} completed end to end",
            value=len(done) / span if span else None,
            unit="/s",
            concurrency=CONCURRENCY,
            count=len(done),
            errors=initiated - len(done),
            p50_ms=_ms(_percentile(seconds, 0.5)),
            p99_ms=_ms(_percentile(seconds, 0.99)),
            cpu_ms_per_op=cpu,
            baseline=baseline,
            goal=goal,
            note=f"p50/p99: initiation to completed; {initiated} initiated, {len(done)} completed"
            + (f" in {span:.1f} s" if span else "")
            + (f"; not completed: {others}" if others else "")
            + _reasons(rows)
            + sql,
        )
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _latency_figure(results: Results, name: str, sample: Sample, goal: Goal | None) -> None:
    results.add(
        Figure(
            group=GROUP,
            name=name,
            value=sample.p99_ms,
            unit="ms",
            concurrency=sample.concurrency,
            count=sample.count,
            errors=sample.errors,
            p50_ms=sample.p50_ms,
            p99_ms=sample.p99_ms,
            cpu_ms_per_op={k: round(v, 3) for k, v in sample.cpu_ms_per_op.items()},
            goal=goal,
            note=f"{sample.rate:.0f}/s initiated while the cluster completes them",
            first_error=sample.first_error,
        )
    )


def _cpu_snapshot(cluster: Any, db: Database) -> dict[str, float]:
    """CPU seconds so far of every cluster process (the bench itself as "client", and mariadbd)."""
    import os

    from bench.load import cpu_seconds

    pids = {name: proc.pid for name, proc in cluster.processes.items() if proc.pid}
    pids["client"] = os.getpid()
    if db.pid:
        pids["mariadbd"] = db.pid
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def _cpu_since(before: dict[str, float], cluster: Any, db: Database) -> dict[str, float]:
    now = _cpu_snapshot(cluster, db)
    return {name: now[name] - before.get(name, 0.0) for name in now}


COUNTERS = (
    "Questions",
    "Com_select",
    "Com_insert",
    "Com_update",
    "Com_update_multi",  # UPDATE of a transaction with its attachment's table
    "Com_delete",
    "Com_delete_multi",  # the queue tables' DELETE by id (persistence/delete_by_ids.py)
    "Com_commit",
    "Com_rollback",
    "Com_savepoint",
    "Com_release_savepoint",
    "Com_set_option",
    "Com_admin_commands",  # COM_PING is counted here (MariaDB does not count it in Questions)
    "Com_stmt_prepare",  # a round trip Questions does not count (the engine's statement cache)
    "Com_stmt_execute",  # of Questions, the statements executed prepared (binary protocol)
    "Innodb_row_lock_waits",
    "Innodb_row_lock_time",
)


async def _server_counters(url: str) -> dict[str, int]:
    """MariaDB's own global counts so far: statements by kind, commits, pings, row-lock waits.
    Server-wide: on the bench's private server they are this run's alone."""
    from sqlalchemy import text

    names = ", ".join(f"'{name}'" for name in COUNTERS)
    query = text(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})")
    async with _engine(url).connect() as connection:
        rows = (await connection.execute(query)).all()
    return {str(name): int(value) for name, value in rows}


async def _prepared_statements(url: str) -> str:
    """The server-side prepared statements held now (the engine's statement cache in every process's
    pooled connections) against the server's limit, and the connections holding them."""
    from sqlalchemy import text

    query = text(
        "SELECT (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS"
        " WHERE VARIABLE_NAME = 'PREPARED_STMT_COUNT'), @@max_prepared_stmt_count,"
        " (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS"
        " WHERE VARIABLE_NAME = 'THREADS_CONNECTED')"
    )
    async with _engine(url).connect() as connection:
        held, limit, connected = (await connection.execute(query)).one()
    return (
        f"prepared statements held by the server: {int(held)} of max_prepared_stmt_count {int(limit)}, "
        f"over {int(connected)} connections"
    )


async def _reset_digests(url: str) -> bool:
    """Empty performance_schema's statement digests (the private server has it on); False if off."""
    from sqlalchemy import text

    try:
        async with _engine(url).connect() as connection:
            on = (await connection.execute(text("SELECT @@performance_schema"))).scalar()
            if not on:
                return False
            await connection.execute(text("TRUNCATE performance_schema.events_statements_summary_by_digest"))
            await connection.execute(
                text("TRUNCATE performance_schema.events_statements_summary_by_thread_by_event_name")
            )
            await connection.commit()
    except Exception:
        return False
    return True


async def _top_digests(url: str, per: int, limit: int = 40, *, failed: bool = False) -> list[str]:
    """The most frequent statements since `_reset_digests`, per completed transaction; `failed`:
    the statements that failed, by their failures."""
    from sqlalchemy import text

    count = "SUM_ERRORS" if failed else "COUNT_STAR"
    query = text(
        f"SELECT {count}, LEFT(REGEXP_REPLACE(DIGEST_TEXT, '[[:space:]]+', ' '), 150) FROM "
        "performance_schema.events_statements_summary_by_digest "
        f"WHERE (SCHEMA_NAME IS NULL OR SCHEMA_NAME <> 'performance_schema') AND {count} > 0 "
        f"ORDER BY {count} DESC LIMIT :n"
    )
    async with _engine(url).connect() as connection:
        rows = (await connection.execute(query, {"n": limit})).all()
    return [f"{int(count) / max(per, 1):6.2f}  {digest}" for count, digest in rows]


@dataclass(frozen=True)
class PerCompleted:
    """MariaDB's counters between two snapshots, divided by the transactions completed."""

    counts: dict[str, float]
    done: int
    private: bool

    def get(self, name: str) -> float:
        return self.counts.get(name, 0.0)

    @property
    def statements(self) -> float:
        return self.get("Questions")

    @property
    def pings(self) -> float:
        return self.get("Com_admin_commands")

    @property
    def prepares(self) -> float:
        return self.get("Com_stmt_prepare")

    @property
    def round_trips(self) -> float:
        return self.statements + self.pings + self.prepares

    def describe(self) -> str:
        # The kinds (Com_*) also count what triggers run, once per row (0028's audit records of
        # financial events); the round trips (Questions) count only what a client sent.
        where = "a private mariadbd: this run alone" if self.private else "server-wide: the shared server"
        g = self.get
        return (
            f"; per completed ({where}): {self.round_trips:.1f} round trips = {self.statements:.1f} SQL "
            f"statements (by kind, triggers' included: select {g('Com_select'):.1f}, "
            f"insert {g('Com_insert'):.1f}, update "
            f"{g('Com_update') + g('Com_update_multi'):.1f}, "
            f"delete {g('Com_delete') + g('Com_delete_multi'):.1f}, savepoint {g('Com_savepoint'):.1f}, "
            f"release {g('Com_release_savepoint'):.1f}, set {g('Com_set_option'):.1f}; "
            f"{g('Com_stmt_execute'):.1f} of them prepared) + {self.pings:.1f} pings + "
            f"{self.prepares:.1f} prepares; "
            f"{g('Com_commit'):.1f} commits, {g('Com_rollback'):.1f} rollbacks; "
            f"{g('Innodb_row_lock_waits'):.2f} row-lock waits ({g('Innodb_row_lock_time'):.0f} ms waited)"
        )


def _per_completed(
    before: dict[str, int], after: dict[str, int], rows: list[Outcome], private: bool
) -> PerCompleted:
    done = sum(1 for o in rows if o.status == "COMPLETED")
    counts = {name: (after.get(name, 0) - before.get(name, 0)) / max(done, 1) for name in COUNTERS}
    return PerCompleted(counts, done, private)


def _log_sizes(workdir: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in workdir.glob("*.log")}


async def _sim_rate_limited(control: str) -> int:
    """RateLimit answers the Deriv simulator's call limits gave so far (its own count)."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(f"{control}/stats/rate_limited") as r:
        r.raise_for_status()
        return int((await r.json())["total"])


def _deferral_count(workdir: Path, since: dict[Path, int]) -> int:
    count = 0
    for path in workdir.glob("*.log"):
        with path.open("rb") as f:
            f.seek(since.get(path, 0))
            count += sum(1 for raw in f if b"saga.call_deferred" in raw)
    return count


def _rate_limit_lines(workdir: Path, since: dict[Path, int]) -> list[str]:
    found = []
    for path in workdir.glob("*.log"):
        with path.open("rb") as f:
            f.seek(since.get(path, 0))
            for raw in f:
                text = raw.decode(errors="replace")
                if "RateLimit" in text:  # Deriv's error code, as the gateway and workers log it
                    plain = re.sub(r"\x1b\[[0-9;]*m", "", text).strip()
                    found.append(f"{path.name}: {plain[:200]}")
    return found


async def run_e2e_group(args: argparse.Namespace, results: Results) -> None:
    import importlib.util

    if importlib.util.find_spec("proving.cluster") is None:
        results.notes.append("e2e: proving/cluster.py is not there yet: the end-to-end group was not run")
        return
    from bench.private_mariadb import private_mariadb

    deposits, withdrawals, burst = sizes(args)
    # at least 2 users per call in flight: one user's deposits never overlap (each refreshes its KYC)
    dep_users_n = max(-(-deposits // DEPOSITS_PER_USER), 2 * CONCURRENCY)
    burst_users_n = max(-(-burst // DEPOSITS_PER_USER), 2 * CONCURRENCY)
    wd_users_n = -(-withdrawals // DEPOSITS_PER_USER)
    t0 = time.monotonic()
    with contextlib.ExitStack() as servers:
        server = (
            None
            if getattr(args, "shared_mariadb", False)
            else servers.enter_context(
                private_mariadb(lock_wait_timeout=0 if getattr(args, "lock_waits", False) else None)
            )
        )
        if server is None:
            results.notes.append(
                "e2e: MariaDB counters are server-wide (the shared server): valid only while this run is "
                "the only one on it"
            )
        else:
            _log(t0, f"private mariadbd on port {server.port}")
        db = Database(
            admin_url=server.admin_url if server else args.mysql_url,
            pid=server.pid if server else _mariadbd_pid(),
            private=server is not None,
            socket=str(server.socket) if server and getattr(args, "db_socket", False) else None,
        )
        if db.socket:
            results.notes.append(
                "e2e: the cluster connects to its mariadbd through the Unix socket (--db-socket)"
            )
        await _run_on(
            args, results, db, t0, deposits, withdrawals, burst, dep_users_n, burst_users_n, wd_users_n
        )


def _with_driver(url: str, driver: str, socket: str | None = None, statement_cache: int | None = None) -> str:
    """The cluster's database URL with `driver` (aiomysql, asyncmy) in its scheme, through `socket`
    (a Unix socket) and with asyncmy's `statement_cache` (prepared statements per connection) when
    given."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername=f"mysql+{driver}")
    if socket is not None:
        parsed = parsed.update_query_dict({"unix_socket": socket})
    if statement_cache is not None and driver == "asyncmy":  # aiomysql has no statement cache
        parsed = parsed.update_query_dict({"stmt_cache_size": str(statement_cache)})
    return parsed.render_as_string(hide_password=False)


def _statement_cache(args: argparse.Namespace) -> int | None:
    """--statement-cache; with --lock-waits and none given, 0: the failed statements are found by
    their digests, which MariaDB keeps for statements sent as text only."""
    chosen: int | None = getattr(args, "statement_cache", None)
    if chosen is None and getattr(args, "lock_waits", False):
        return 0
    return chosen


@dataclass(frozen=True)
class Database:
    admin_url: str
    pid: int | None  # mariadbd's, for its CPU
    private: bool
    socket: str | None = None  # the cluster connects through this Unix socket (--db-socket)


def _mariadbd_pid() -> int | None:
    """The shared server's pid, when it runs on this machine (its CPU is then server-wide too)."""
    import subprocess

    found = subprocess.run(["pidof", "mariadbd"], capture_output=True, text=True, check=False).stdout.split()
    return int(found[0]) if len(found) == 1 else None


async def _run_on(
    args: argparse.Namespace,
    results: Results,
    db: Database,
    t0: float,
    deposits: int,
    withdrawals: int,
    burst: int,
    dep_users_n: int,
    burst_users_n: int,
    wd_users_n: int,
) -> None:
    import grpc

    from bench.groups import DEPOSITS_GOAL, P99_GOAL, raw_ledger_name
    from bench.scratch import scratch_database
    from penpay.payments.v1 import payments_pb2_grpc
    from proving.cluster import Cluster, ClusterConfig

    with (
        scratch_database(db.admin_url, migrated=False) as (_name, url),
        tempfile.TemporaryDirectory(prefix="penpay-bench-e2e-") as tmp,
    ):
        config = ClusterConfig(
            database_url=_with_driver(
                url,
                getattr(args, "mysql_driver", "asyncmy"),
                db.socket,
                _statement_cache(args),
            ),
            redis_url=args.redis_url,
            workdir=Path(tmp),
            seed=7,
            float_usd_cents=10_000_000_00,
            float_kes_cents=1_000_000_000_00,
            env={**FAST_ARGON2, "PENPAY_EVENT_LOOP": getattr(args, "event_loop", "uvloop")},
            fast_sagas=getattr(args, "saga_timings", "fast") == "fast",
            mpesa_callback_delay=getattr(args, "pin_seconds", 1.0),
            # the cluster's fast saga timings (its default): with production timings a deposit waited
            # for the STK Query timer (p50 initiation-to-completed 68 s, measured), not for its callback
        )
        async with Cluster(config) as cluster, contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(_dispose_engine, url)
            _log(t0, "cluster started")
            addr, control = cluster.addresses["grpc"], cluster.addresses["deriv_control"]
            await fund_agent(control, "10000000.00")
            await _sim_limits(control, NO_LIMITS, cluster)
            users = await make_users(addr, control, dep_users_n + burst_users_n + wd_users_n)
            _log(t0, f"{len(users)} users made")
            dep_users = users[:dep_users_n]
            burst_users = users[dep_users_n : dep_users_n + burst_users_n]
            wd_users = users[dep_users_n + burst_users_n :]

            async with grpc.aio.insecure_channel(addr) as channel:
                payments = payments_pb2_grpc.PaymentsServiceStub(channel)

                payers = itertools.count()

                def deposit(user: BenchUser) -> Any:
                    return deposit_op(payments, user, payers)

                # 1. the rate-limit burst, at Deriv's limit
                burst_ops = [deposit(u) for _ in range(DEPOSITS_PER_USER) for u in burst_users][:burst]
                await _burst(results, url, control, cluster, Path(tmp), burst_ops, t0)

                # 2. deposits
                ops = [deposit(u) for _ in range(DEPOSITS_PER_USER) for u in dep_users][:deposits]
                await _measured_phase(
                    results,
                    args,
                    url,
                    db,
                    cluster,
                    "DEPOSIT",
                    ops,
                    latency_name=f"InitiateDeposit p99 under e2e load, {CONCURRENCY} in flight",
                    latency_goal=P99_GOAL,
                    goal=DEPOSITS_GOAL,
                    baseline=raw_ledger_name(16),
                )
                _log(t0, "deposits final")

                # 3. withdrawals
                await _withdrawals(results, args, url, db, control, channel, wd_users, withdrawals, cluster)


def deposit_op(payments: Any, user: BenchUser, payers: Iterator[int]) -> Any:
    """One InitiateDeposit of 1,300 KES by `user` through the PaymentsService stub `payments`."""
    import grpc

    from penpay.payments.v1 import payments_pb2

    async def one() -> None:
        key = ("idempotency-key", f"bench-{secrets.token_hex(8)}")
        # Each deposit paid from a phone of its own: with a PIN delay a user's deposits are in
        # flight together, and M-Pesa refuses a second STK push to a phone whose first waits for
        # its PIN (SubscriberLocked).
        request = payments_pb2.InitiateDepositRequest(
            amount_cents=1_300_00, currency="KES", phone_number=payer_phone(next(payers))
        )
        try:
            await payments.InitiateDeposit(request, metadata=user.metadata(key))
        except grpc.aio.AioRpcError as exc:  # a client retries ABORTED with the same key
            if exc.code() is not grpc.StatusCode.ABORTED:
                raise
            await asyncio.sleep(0.1)
            await payments.InitiateDeposit(request, metadata=user.metadata(key))

    return one


# Statements by process: a connection names its process by the `_pid` attribute the driver sends.
_BY_PROCESS = """
SELECT a.ATTR_VALUE AS pid, e.EVENT_NAME AS event, SUM(e.COUNT_STAR) AS n
FROM performance_schema.events_statements_summary_by_thread_by_event_name e
JOIN performance_schema.threads t ON t.THREAD_ID = e.THREAD_ID
JOIN performance_schema.session_connect_attrs a
  ON a.PROCESSLIST_ID = t.PROCESSLIST_ID AND a.ATTR_NAME = '_pid'
WHERE e.COUNT_STAR > 0 AND (e.EVENT_NAME LIKE 'statement/sql/%'
  OR e.EVENT_NAME IN ('statement/com/Execute', 'statement/com/Bulk_execute', 'statement/com/Prepare'))
GROUP BY a.ATTR_VALUE, e.EVENT_NAME
"""


async def _statements_by_process(url: str, per: int, cluster: Any) -> str:
    """Per completed transaction and process: statements (a prepared one's execution is a
    statement/com event, not statement/sql), commits, rollbacks and prepares, counted on the
    connections still open at the end (pools keep theirs; one closed during the run is missing)."""
    from sqlalchemy import text

    names = {str(proc.pid): name for name, proc in cluster.processes.items() if proc.pid}
    counts: dict[str, dict[str, int]] = {}
    async with _engine(url).connect() as connection:
        for pid, event, n in (await connection.execute(text(_BY_PROCESS))).all():
            name = names.get(str(pid))
            if name is None:
                continue  # the bench's own connections
            kind = str(event).rsplit("/", 1)[-1]
            mine = counts.setdefault(name, {"all": 0, "commit": 0, "rollback": 0, "Prepare": 0})
            if kind in ("commit", "rollback", "Prepare"):
                mine[kind] += int(n)
            if kind != "Prepare":  # a round trip of its own, not a statement (as in Questions)
                mine["all"] += int(n)
    done = max(per, 1)
    return ", ".join(
        f"{name} {c['all'] / done:.1f} "
        f"({c['commit'] / done:.2f} commits, {c['rollback'] / done:.2f} rollbacks, "
        f"{c['Prepare'] / done:.2f} prepares)"
        for name, c in sorted(counts.items(), key=lambda item: -item[1]["all"])
    )


async def _measured_phase(
    results: Results,
    args: argparse.Namespace,
    url: str,
    db: Database,
    cluster: Any,
    kind: str,
    ops: list[Any],
    *,
    latency_name: str,
    latency_goal: Goal | None = None,
    goal: Goal | None = None,
    baseline: str | None = None,
) -> None:
    """One phase of deposits or withdrawals: `ops` at CONCURRENCY, the callers' latency, then the
    completions from the database, with each process's CPU and MariaDB's statements per completed."""
    from workers.notifications import NOTICE_GROUP  # imported before the window: its CPU is the bench's

    since = datetime.now(UTC).replace(microsecond=0)
    await asyncio.sleep(1)  # created_at >= since, whatever the rounding
    since_wall = time.time()
    digests = await _reset_digests(url)
    cpu_before = _cpu_snapshot(cluster, db)
    sql_before = await _server_counters(url)
    sample = await counted(CONCURRENCY, ops, pids={"api": cluster.processes["api"].pid or 0})
    _latency_figure(results, latency_name, sample, latency_goal)
    rows = await _wait_final(url, kind, since, sample.count, 60 if args.quick else 120)
    await _wait_notices(url, NOTICE_GROUP, since, sum(1 for o in rows if o.status in FINAL))
    per = _per_completed(sql_before, await _server_counters(url), rows, db.private)
    cpu = _cpu_since(cpu_before, cluster, db)
    _completion_figures(
        results, f"{kind.lower()}s", rows, since_wall, len(ops), goal, baseline, cpu, per.describe()
    )
    _floor_figures(results, kind.lower(), per, cpu)
    _machine_figures(results, kind.lower(), per, cpu, goal)
    results.notes.append(await _slowest_timelines(url, kind, since))
    results.notes.append(f"e2e {kind.lower()}s: {await _prepared_statements(url)}")
    if digests and per.done:
        top = await _top_digests(url, per.done)
        results.notes.append(
            f"e2e {kind.lower()}s: the most frequent statements per completed {kind.lower()} "
            "(performance_schema digests, all processes; statements sent as text only: MariaDB keeps no "
            "digest of a prepared statement's executions, --statement-cache 0 lists them all):\n    "
            + "\n    ".join(top)
        )
        if getattr(args, "lock_waits", False):
            failed = await _top_digests(url, per.done, failed=True)
            results.notes.append(
                f"e2e {kind.lower()}s (--lock-waits): statements that failed, per completed "
                f"{kind.lower()} (with innodb_lock_wait_timeout at 0 each row-lock wait is a failure):"
                "\n    " + "\n    ".join(failed or ["none"])
            )
        by_process = await _statements_by_process(url, per.done, cluster)
        results.notes.append(
            f"e2e {kind.lower()}s: statements per completed {kind.lower()} by process: {by_process}"
        )


async def _slowest_timelines(url: str, kind: str, since: datetime, count: int = 10) -> str:
    """Where the slowest completed transactions spent their time: each event they raised, by when
    it was written (+ms from creation) and how long the relay took to publish it (/ms)."""
    from sqlalchemy import select

    from persistence.tables import domain_events as e
    from persistence.tables import saga_steps as s
    from persistence.tables import transactions as t

    async with _engine(url).connect() as connection:
        done = (
            await connection.execute(
                select(t.c.id, t.c.created_at, t.c.updated_at).where(
                    t.c.type == kind, t.c.created_at >= since, t.c.status == "COMPLETED"
                )
            )
        ).all()
        slow = sorted(done, key=lambda r: r.updated_at - r.created_at, reverse=True)[:count]
        lines = []
        for row in slow:
            events = (
                await connection.execute(
                    select(
                        e.c.event_type, e.c.aggregate_version, e.c.occurred_at, e.c.published_at, e.c.payload
                    )
                    .where(e.c.aggregate_id == str(row.id))
                    .order_by(e.c.occurred_at, e.c.id)
                )
            ).all()

            def ms(at: datetime | None, start: datetime = row.created_at) -> str:
                return "-" if at is None else f"{(at - start).total_seconds() * 1000:.0f}"

            steps = " ".join(
                f"{_event_label(ev.event_type, ev.payload)}@{ev.aggregate_version or ''}"
                f"+{ms(ev.occurred_at)}/{ms(ev.published_at, ev.occurred_at)}"
                for ev in events
            )
            saga = (
                await connection.execute(
                    select(s.c.step, s.c.attempts, s.c.started_at, s.c.updated_at, s.c.detail)
                    .where(s.c.transaction_id == row.id)
                    .order_by(s.c.started_at)
                )
            ).all()
            tried = " ".join(
                f"{r.step}x{r.attempts}+{ms(r.started_at)}..{ms(r.updated_at)}({(r.detail or '')[:40]})"
                for r in saga
            )
            lines.append(f"{ms(row.updated_at)} ms: {steps}\n      steps: {tried}")
    return (
        f"e2e {kind.lower()}s: the {len(lines)} slowest, each event as"
        " type@version+ms written/ms to publish:\n    " + "\n    ".join(lines)
    )


def _event_label(event_type: str, payload: str) -> str:
    """A status change by the state it entered (the rest by their names)."""
    import json

    to = json.loads(payload).get("to_status") if event_type == "TransactionStatusChanged" else None
    return f"->{to}" if to else event_type


NOT_PENPAY = ("mariadbd", "deriv-sim", "mpesa-sim", "client")  # processes the CPU goal leaves out
FLOOR_GOALS = {  # issue 19's goals, per completed deposit / withdrawal
    "deposit": (45, 8, 15.0, 0.1),
    "withdrawal": (50, 9, None, None),
}


def _floor_figures(results: Results, kind: str, per: PerCompleted, cpu: dict[str, float]) -> None:
    """Issue 19's per-transaction figures, each a figure of its own so it is judged and kept in the JSON."""
    if not per.done:
        return
    statements, commits, cpu_goal, waits_goal = FLOOR_GOALS[kind]
    penpay = sum(sec for name, sec in cpu.items() if name not in NOT_PENPAY)
    mariadbd = cpu.get("mariadbd")

    def add(name: str, value: float, unit: str, goal: Goal | None, note: str = "") -> None:
        results.add(
            Figure(group=GROUP, name=name, value=value, unit=unit, count=per.done, goal=goal, note=note)
        )

    add(
        f"SQL round trips per completed {kind} (pings counted)",
        per.round_trips,
        "stmts",
        Goal(f"<= {statements}", "value_at_most", statements),
        f"{per.statements:.1f} statements + {per.pings:.1f} pings + {per.prepares:.1f} prepares",
    )
    add(
        f"commits per completed {kind}",
        per.get("Com_commit"),
        "commits",
        Goal(f"<= {commits}", "value_at_most", commits),
        f"{per.get('Com_rollback'):.1f} rollbacks",
    )
    add(
        f"row-lock waits per completed {kind}",
        per.get("Innodb_row_lock_waits"),
        "waits",
        Goal(f"<= {waits_goal}", "value_at_most", waits_goal) if waits_goal is not None else None,
    )
    add(
        f"CPU per completed {kind}, PenPay's processes",
        penpay * 1000 / per.done,
        "ms",
        Goal(f"<= {cpu_goal} ms", "value_at_most", cpu_goal) if cpu_goal is not None else None,
        (
            f"mariadbd beside it: {mariadbd * 1000 / per.done:.1f} ms"
            if mariadbd is not None
            else "mariadbd: not measured"
        )
        + ("" if per.private else " (server-wide)"),
    )


def _machine_figures(
    results: Results, kind: str, per: PerCompleted, cpu: dict[str, float], rate_goal: Goal | None
) -> None:
    """What this machine's cores allow, from the phase's own CPU per completed transaction: the
    e2e cluster saturates the cores, so the rate is CPU-bound and its ceiling is the cores' CPU
    over the CPU one transaction costs; counting only mariadbd, the simulators and the load
    generator gives the ceiling that no change to PenPay's processes can pass (with its
    statements as they are). Both are this machine's: they say whether a rate goal fits on it."""
    if not per.done or not per.private or "mariadbd" not in cpu:
        return  # a shared server's CPU is not this run's alone
    cores = os.cpu_count() or 1
    total = sum(cpu.values()) / per.done
    outside = sum(sec for name, sec in cpu.items() if name in NOT_PENPAY) / per.done
    penpay = total - outside
    mariadbd = cpu["mariadbd"] / per.done
    share = ", ".join(f"{name} {cpu[name] * 1000 / per.done:.1f}" for name in NOT_PENPAY if name in cpu)

    def add(name: str, value: float, unit: str, note: str) -> None:
        results.add(Figure(group=GROUP, name=name, value=value, unit=unit, count=per.done, note=note))

    add(
        f"{kind}s/s the cores allow at this CPU per {kind}",
        cores / total,
        "/s",
        f"{cores} cores over {total * 1000:.1f} ms of CPU per {kind}, every process counted",
    )
    beyond = (
        rate_goal is not None and rate_goal.kind == "value_at_least" and cores / outside < rate_goal.threshold
    )
    add(
        f"{kind}s/s the cores allow with PenPay's processes free",
        cores / outside,
        "/s",
        f"{cores} cores over the {outside * 1000:.1f} ms per {kind} of the rest ({share} ms)"
        + (
            f": the goal ({rate_goal.text}) is beyond this machine whatever PenPay's processes cost"
            if beyond and rate_goal
            else ""
        ),
    )
    add(
        f"CPU of PenPay's processes per {kind} / mariadbd's",
        penpay / mariadbd,
        "x",
        "both move with the machine's speed; their ratio compares runs on different machines",
    )


async def _burst(
    results: Results, url: str, control: str, cluster: Any, workdir: Path, ops: list[Any], t0: float
) -> None:
    """B deposits at once against Deriv's call limit (a fresh limit window: run before the other
    phases, whose calls would already fill it), then the RateLimit answers the cluster received."""
    await _sim_limits(control, {"general_minutely": BURST_LIMIT_PER_MINUTE}, cluster)
    refused_before = await _sim_rate_limited(control)
    marks = _log_sizes(workdir)
    since = datetime.now(UTC).replace(microsecond=0)
    await asyncio.sleep(1)  # created_at >= since, whatever the rounding
    since_wall = time.time()
    await counted(CONCURRENCY, ops)
    _log(t0, f"burst of {len(ops)} initiated")
    timeout = len(ops) / (BURST_LIMIT_PER_MINUTE * 0.9 / 60) * 1.5 + 30
    rows = await _wait_final(url, "DEPOSIT", since, len(ops), timeout)
    _log(t0, "burst final")
    completed = [o.updated for o in rows if o.status == "COMPLETED"]
    others: dict[str, int] = {}
    for o in rows:
        if o.status != "COMPLETED":
            others[o.status] = others.get(o.status, 0) + 1
    done, span = len(completed), (max(completed) - since_wall if completed else 0.0)
    refused = await _sim_rate_limited(control) - refused_before
    limited = _rate_limit_lines(workdir, marks)
    deferred = _deferral_count(workdir, marks)
    binds = len(ops) > BURST_LIMIT_PER_MINUTE * 0.9
    results.add(
        Figure(
            group=GROUP,
            name=f"rate-limit burst: {len(ops)} deposits, RateLimit errors received",
            value=float(refused),
            unit="errors",
            count=done,
            goal=Goal("0 RateLimit errors", "value_at_most", 0),
            note=f"{done} of {len(ops)} completed in {span:.0f} s ({done / max(span, 1e-3):.1f}/s)"
            + (f", not completed: {others}" if others else "")
            + _reasons(rows)
            + f"; Deriv's limit {BURST_LIMIT_PER_MINUTE} calls/min, the gateway allows itself 90%: "
            + ("the limit bound" if binds else "too small a burst for the limit to bind (use --burst)")
            + f"; RateLimit answers counted by the Deriv simulator: {refused}; transfers the gateway's "
            f"own limiter held back (deferred by the saga, no attempt used): {deferred}"
            + (f"; first RateLimit log line: {limited[0]}" if limited else ""),
        )
    )
    await _sim_limits(control, NO_LIMITS, cluster)  # the other phases measure PenPay, not the limit


async def _withdrawals(
    results: Results,
    args: argparse.Namespace,
    url: str,
    db: Database,
    control: str,
    channel: Any,
    users: list[BenchUser],
    count: int,
    cluster: Any,
) -> None:
    import aiohttp

    from penpay.payments.v1 import payments_pb2, payments_pb2_grpc

    payments = payments_pb2_grpc.PaymentsServiceStub(channel)
    async with aiohttp.ClientSession() as http:
        for user in users:  # the users' Deriv accounts hold the USD they withdraw
            async with http.post(
                f"{control}/accounts/{user.loginid}/adjust", json={"amount": "1000.00", "note": "bench"}
            ) as r:
                r.raise_for_status()
        locks = {user.loginid: asyncio.Lock() for user in users}

        def withdrawal(user: BenchUser) -> Any:
            async def one() -> None:
                # one at a time per user: the mailbox's latest code must be this withdrawal's
                async with locks[user.loginid]:
                    started = await payments.InitiateWithdrawal(
                        payments_pb2.InitiateWithdrawalRequest(amount_cents=10_00, currency="USD"),
                        metadata=user.metadata(("idempotency-key", f"bench-{secrets.token_hex(8)}")),
                    )
                    async with http.get(f"{control}/mailbox/{user.loginid}") as r:
                        code = (await r.json())["latest"]
                    await payments.ConfirmWithdrawal(
                        payments_pb2.ConfirmWithdrawalRequest(
                            transaction_id=started.transaction.transaction_id, verification_code=code
                        ),
                        metadata=user.metadata(("idempotency-key", f"bench-{secrets.token_hex(8)}")),
                    )

            return one

        ops = [withdrawal(u) for _ in range(DEPOSITS_PER_USER) for u in users][:count]
        await _measured_phase(
            results,
            args,
            url,
            db,
            cluster,
            "WITHDRAWAL",
            ops,
            latency_name=f"InitiateWithdrawal + ConfirmWithdrawal p99, {CONCURRENCY} in flight",
        )
