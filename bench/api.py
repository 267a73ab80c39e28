"""The public surface: the real gRPC API (penpay.wiring.api.build_api, as `penpay api` runs it)
and the HTTP/JSON bridge (`penpay http`) in front of it, each in a process of its own, on a scratch
MariaDB, with the Deriv simulator + gateway (KYC refresh and binding) and the Daraja simulator.

Figures (all from this process, over loopback TCP):
- grpcio unary echo, 16 in flight: the raw baseline of a unary RPC on this machine;
- GetBalances through gRPC (authenticated: JWT verified, database read), 16 in flight;
- GetBalances through the bridge (HTTP/1.1 keep-alive, aiohttp client), 16 in flight, as a ratio of
  the gRPC figure: issue 7's goal is >= 0.7;
- InitiateDeposit through gRPC, 16 in flight, each deposit once (idempotency key, compliance with a
  fresh KYC read from Deriv, quote locked, transaction stored): p50/p99. Nothing completes it (no
  workers here): this is the latency a caller waits for.

The bench users are made through the API itself (bench/users.py); the API process hashes
passwords at test cost, since making users is set-up, not what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
from typing import Any

from bench import sql_counts
from bench.load import counted, timed
from bench.results import Figure, Results
from bench.roles import processes, spawn
from bench.users import DEPOSITS_PER_USER, BenchUser, make_users

GROUP = "api"


async def run_api_group(args: argparse.Namespace, results: Results) -> None:
    import aiohttp
    import grpc

    from bench.baselines import grpc_echo
    from bench.groups import API_CONCURRENCY, BRIDGE_GOAL, P99_GOAL
    from bench.scratch import scratch_database
    from mpesa_adapter.simulator.config import DEFAULT_INITIATOR_PASSWORD, SANDBOX_PASSKEY
    from penpay.payments.v1 import payments_pb2, payments_pb2_grpc
    from penpay.wallet.v1 import wallet_pb2, wallet_pb2_grpc

    n = API_CONCURRENCY
    users_needed = 24 if args.quick else 100  # the deposits: (users - n/2 for the warm-up) x 5
    with scratch_database(args.mysql_url) as (_name, url), processes() as procs:
        sim, sim_info = spawn("deriv-sim")
        procs.append(sim)
        gw, gw_info = spawn("gateway", ws_url=sim_info["ws"], database_url=url)
        procs.append(gw)
        mpesa, mpesa_info = spawn("mpesa-sim")
        procs.append(mpesa)
        settings = {
            "app_env": "testing",
            "database_url": url,
            "redis_url": args.redis_url,
            "grpc_addr": "127.0.0.1:0",
            "gateway_addr": gw_info["addr"],
            "mpesa_base_url": mpesa_info["url"],
            # what the simulator accepts: InitiateDeposit's STK push goes out and is answered, as in
            # production (its callback finds no endpoint here: nothing waits on it)
            "mpesa_consumer_key": "penpay-bench",
            "mpesa_consumer_secret": "penpay-bench-secret",
            "mpesa_passkey": SANDBOX_PASSKEY,
            "mpesa_initiator_password": DEFAULT_INITIATOR_PASSWORD,
            "mpesa_callback_secret": "penpay-bench-callbacks",
        }
        counts_path = f"/tmp/penpay-bench-api-sql-{os.getpid()}.json"
        env = {**os.environ, "PENPAY_APP_ENV": "testing", sql_counts.ENV: counts_path}
        api, api_info = spawn("api", env=env, settings=settings)
        procs.append(api)
        bridge, bridge_info = spawn("bridge", grpc_addr=api_info["addr"])
        procs.append(bridge)
        echo, echo_info = spawn("grpc-echo")
        procs.append(echo)

        users = await make_users(api_info["addr"], sim_info["control"], users_needed)
        me = os.getpid()

        # a unary echo of a small message, as small as the balances RPC's
        sample = await grpc_echo(
            echo_info["addr"], n, b"x" * 64, seconds=args.seconds, warmup=args.warmup, server_pid=echo.pid
        )
        echo_name = f"raw grpcio unary echo, {n} in flight"
        results.rate(GROUP, echo_name, sample, unit="rpc/s")

        turn = iter(range(1 << 62))
        async with grpc.aio.insecure_channel(api_info["addr"]) as channel:
            wallet = wallet_pb2_grpc.WalletServiceStub(channel)

            async def balances_grpc() -> None:
                user = users[next(turn) % len(users)]
                await wallet.GetBalances(wallet_pb2.GetBalancesRequest(), metadata=user.metadata())

            sample = await timed(
                n,
                balances_grpc,
                seconds=args.seconds,
                warmup=args.warmup,
                pids={"client": me, "api": api.pid},
            )
            grpc_name = f"GetBalances via gRPC, {n} in flight"
            results.rate(GROUP, grpc_name, sample, unit="rpc/s", baseline=echo_name)

        connector = aiohttp.TCPConnector(limit=n)
        async with aiohttp.ClientSession(connector=connector) as http:
            url_balances = f"{bridge_info['url']}/v1/wallet/balances"

            async def balances_http() -> None:
                user = users[next(turn) % len(users)]
                async with http.get(url_balances, headers={"Authorization": f"Bearer {user.token}"}) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"HTTP {r.status}")

            sample = await timed(
                n,
                balances_http,
                seconds=args.seconds,
                warmup=args.warmup,
                pids={"client": me, "bridge": bridge.pid, "api": api.pid},
            )
            results.rate(
                GROUP,
                f"GetBalances via HTTP bridge, {n} in flight",
                sample,
                unit="req/s",
                baseline=grpc_name,
                goal=BRIDGE_GOAL,
            )

        async with grpc.aio.insecure_channel(api_info["addr"]) as channel:
            payments = payments_pb2_grpc.PaymentsServiceStub(channel)

            def deposit(user: BenchUser) -> Any:
                async def one() -> None:
                    reply = await payments.InitiateDeposit(
                        payments_pb2.InitiateDepositRequest(amount_cents=1_300_00, currency="KES"),
                        metadata=user.metadata(("idempotency-key", f"bench-{secrets.token_hex(8)}")),
                    )
                    if reply.transaction.status != "pending":
                        raise RuntimeError(f"deposit is {reply.transaction.status}")

                return one

            # a short unmeasured warm-up on users of their own, then every deposit once
            warm, measured = users[: n // 2], users[n // 2 :]
            await counted(n, [deposit(u) for u in warm])
            ops = [deposit(u) for _ in range(DEPOSITS_PER_USER) for u in measured]
            before = await sql_counts.read(api.pid, counts_path)
            sample = await counted(n, ops, pids={"client": me, "api": api.pid})
            # the background audit seals and STK pushes (their answers) of the last deposits: read
            # until the API's counts stop moving
            after = await sql_counts.read(api.pid, counts_path)
            for _ in range(40):
                await asyncio.sleep(0.5)
                settled, after = after, await sql_counts.read(api.pid, counts_path)
                if all(settled[k] == after[k] for k in ("statements", "commits", "rollbacks")):
                    break
            per = {
                k: (after[k] - before[k]) / max(1, sample.count)
                for k in ("statements", "commits", "rollbacks")
            }
            figure = Figure(
                group=GROUP,
                name=f"InitiateDeposit via gRPC p99, {n} in flight",
                value=sample.p99_ms,
                unit="ms",
                concurrency=n,
                count=sample.count,
                errors=sample.errors,
                p50_ms=sample.p50_ms,
                p99_ms=sample.p99_ms,
                cpu_ms_per_op={k: round(v, 3) for k, v in sample.cpu_ms_per_op.items()},
                goal=P99_GOAL,
                note=f"{sample.rate:.0f} deposits initiated/s over {sample.count} deposits "
                f"({len(measured)} users, {DEPOSITS_PER_USER} each); not completed (no workers here); "
                f"per deposit, the API's SQL (InitiateDeposit and the STK push it sends after, with its "
                f"answer): {per['statements']:.1f} statements, {per['commits']:.1f} "
                f"commits, {per['rollbacks']:.1f} rollbacks",
                first_error=sample.first_error,
            )
            results.add(figure)
