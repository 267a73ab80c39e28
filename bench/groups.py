"""The benchmark groups `python -m bench` runs, in order, and what each compares.

ledger   raw aiomysql ledger-like tx vs PenPay posting through SqlUnitOfWork, at 1, 16, 64 concurrent
api      grpcio echo vs the real gRPC API (GetBalances) vs the HTTP bridge on the same RPC;
         InitiateDeposit p50/p99 through gRPC
gateway  grpcio echo and websockets echo vs gateway Transfer (gRPC -> gateway -> WebSocket -> Deriv sim)
bus      redis-py XADD
e2e      deposits and withdrawals end to end on the multi-process cluster (proving/cluster.py)
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from bench.results import Goal, Results

LEDGER_LEVELS = (1, 16, 64)
LEDGER_ACCOUNTS = 1000  # postings pick 2 of these at random (raw and PenPay alike)
API_CONCURRENCY = 16
GATEWAY_INFLIGHT = 64
XADD_CONCURRENCY = 16

SETTINGS: dict[str, Any] = {
    "ledger_levels": LEDGER_LEVELS,
    "ledger_accounts": LEDGER_ACCOUNTS,
    "api_concurrency": API_CONCURRENCY,
    "gateway_inflight": GATEWAY_INFLIGHT,
    "xadd_concurrency": XADD_CONCURRENCY,
}

LEDGER_GOAL = Goal(">= 0.60 of raw", "ratio_at_least", 0.60)
BRIDGE_GOAL = Goal(">= 0.70 of gRPC", "ratio_at_least", 0.70)
DEPOSITS_GOAL = Goal(">= 100 /s", "value_at_least", 100)  # issue 19
P99_GOAL = Goal("p99 <= 50 ms", "value_at_most", 50)


def raw_ledger_name(n: int) -> str:
    return f"raw aiomysql ledger tx, {n} conn"


async def ledger(args: argparse.Namespace, results: Results) -> None:
    from bench.baselines import RawLedger
    from bench.ledger import LedgerPostings
    from bench.scratch import scratch_database

    with scratch_database(args.mysql_url) as (name, url):
        raw = RawLedger(args.mysql_url, name, LEDGER_ACCOUNTS)
        await raw.setup()
        penpay = LedgerPostings(url, LEDGER_ACCOUNTS)
        try:
            await penpay.setup()
            for n in LEDGER_LEVELS:
                sample = await raw.run(n, seconds=args.seconds, warmup=args.warmup)
                results.rate("ledger", raw_ledger_name(n), sample, unit="tx/s")
                # enough claimed keys for the window at the raw rate, with room to spare
                await penpay.claim_keys(int(sample.rate * (args.seconds + args.warmup) * 1.3) + 200)
                sample = await penpay.run(n, seconds=args.seconds, warmup=args.warmup)
                results.rate(
                    "ledger",
                    f"PenPay posting (SqlUnitOfWork), {n} concurrent",
                    sample,
                    unit="tx/s",
                    baseline=raw_ledger_name(n),
                    goal=LEDGER_GOAL if n == 16 else None,
                )
            if penpay.inline_claims:
                results.notes.append(f"ledger: {penpay.inline_claims} idempotency keys claimed inline")
        finally:
            await penpay.close()


async def api(args: argparse.Namespace, results: Results) -> None:
    from bench.api import run_api_group

    await run_api_group(args, results)


async def gateway(args: argparse.Namespace, results: Results) -> None:
    from bench.bench_gateway import run_gateway_group

    await run_gateway_group(args, results, inflight=GATEWAY_INFLIGHT)


async def bus(args: argparse.Namespace, results: Results) -> None:
    from bench.baselines import redis_xadd

    sample = await redis_xadd(args.redis_url, XADD_CONCURRENCY, seconds=args.seconds, warmup=args.warmup)
    results.rate("bus", f"raw redis-py XADD, {XADD_CONCURRENCY} concurrent", sample, unit="ops/s")


async def e2e(args: argparse.Namespace, results: Results) -> None:
    from bench.e2e import run_e2e_group

    await run_e2e_group(args, results)


ORDER = ("ledger", "api", "gateway", "bus", "e2e")
RUNNERS: dict[str, Callable[[argparse.Namespace, Results], Awaitable[None]]] = {
    "ledger": ledger,
    "api": api,
    "gateway": gateway,
    "bus": bus,
    "e2e": e2e,
}
