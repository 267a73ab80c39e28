"""Benchmark: Transfer RPCs/s through gRPC -> gateway -> WebSocket -> Deriv simulator, with N in flight,
beside a raw grpcio unary echo and a raw websockets round trip measured in the same run, and the
same Transfer through the gateway's REST transport (gRPC -> gateway -> HTTP -> Deriv REST simulator).

    .venv/bin/python -m bench.bench_gateway [--inflight 64] [--seconds 5] [--database-url URL]
    .venv/bin/python -m bench --groups gateway          # the same, as a group of the whole benchmark

Every server (simulator, gateway, echo servers) runs in a process of its own (bench/roles.py), the
load generator in this one, so the three measurements share one topology: client process -> server
process (-> simulator process). Absolute numbers drift between runs on this machine: read the ratios.
The CPU figures (Linux) say where the time goes: CPU milliseconds per operation of the load
generator, the server (echo server or gateway) and the simulator; the journal database's own CPU is
not included. Bounded: well under 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import uuid

from bench.load import Sample, thread_cpu_seconds, timed
from bench.results import Goal, Results, print_table
from bench.roles import processes, spawn
from bench.users import fund_agent

GROUP = "gateway"
GATEWAY_GOAL = Goal(">= 0.70 of grpc echo", "ratio_at_least", 0.70)  # the gateway's own issue goal


async def run_gateway_group(
    args: argparse.Namespace,
    results: Results,
    *,
    inflight: int = 64,
    compression: bool = False,
    database_url: str | None = None,
) -> None:
    import aiohttp
    import grpc

    from bench.baselines import grpc_echo, ws_echo
    from deriv_gateway.simulator import DEFAULT_AGENT_TOKEN
    from penpay.common.v1 import money_pb2
    from penpay.deriv.v1 import deriv_gateway_pb2 as pb
    from penpay.deriv.v1 import deriv_gateway_pb2_grpc as pb_grpc

    n, seconds, warmup = inflight, args.seconds, args.warmup
    with tempfile.TemporaryDirectory(prefix="penpay-bench-") as tmp, processes() as procs:
        journal = database_url or f"sqlite+aiosqlite:///{tmp}/journal.db"
        if database_url is None:
            from persistence import migrate

            await asyncio.to_thread(migrate.upgrade, journal)
        sim, sim_info = spawn("deriv-sim", compression=compression, rest=True)
        procs.append(sim)
        await fund_agent(sim_info["control"], "100000000.00")  # the agent needs a balance for the run
        gateway, gw_info = spawn(
            "gateway",
            ws_url=sim_info["ws"],
            database_url=journal,
            compression=compression,
            rest_url=sim_info["rest"],
        )
        procs.append(gateway)
        echo, echo_info = spawn("grpc-echo")
        procs.append(echo)
        ws_server, ws_info = spawn("ws-echo", compression=compression)
        procs.append(ws_server)
        me = os.getpid()

        # raw grpcio unary echo, same payload size as a TransferRequest
        sample_request = pb.TransferRequest(
            transfer_id=str(uuid.uuid4()),
            client_loginid="CR90000001",
            amount=money_pb2.Money(amount_cents=1000, currency="USD"),
        ).SerializeToString()
        echo_name = f"raw grpcio unary echo, {n} in flight"
        if results.get(echo_name) is None:
            sample = await grpc_echo(
                echo_info["addr"], n, sample_request, seconds=seconds, warmup=warmup, server_pid=echo.pid
            )
            results.rate(GROUP, echo_name, sample, unit="rpc/s")

        frame = {
            "paymentagent_transfer": 1,
            "amount": 10,
            "currency": "USD",
            "transfer_to": "CR90000001",
            "description": f"PenPay {uuid.uuid4()}",
        }
        ws_name = f"raw websockets round trip, {n} in flight, 1 conn"
        sample = await ws_echo(
            ws_info["url"],
            n,
            frame,
            seconds=seconds,
            warmup=warmup,
            server_pid=ws_server.pid,
            compression=compression,
        )
        results.rate(GROUP, ws_name, sample, unit="rt/s")

        amount = money_pb2.Money(amount_cents=1000, currency="USD")

        async def transfers(addr: str, pids: dict[str, int], *, rest: bool = False) -> Sample:
            async with grpc.aio.insecure_channel(addr) as channel:
                stub = pb_grpc.DerivGatewayServiceStub(channel)

                def request() -> pb.TransferRequest:
                    if rest:  # the same client on Deriv's new API, by nickname
                        return pb.TransferRequest(
                            transfer_id=str(uuid.uuid4()),
                            client_nickname="alice_w",
                            amount=amount,
                            api=pb.DERIV_API_REST,
                        )
                    return pb.TransferRequest(
                        transfer_id=str(uuid.uuid4()), client_loginid="CR90000001", amount=amount
                    )

                async def transfer_once() -> None:
                    await stub.Transfer(request())

                server = next(name for name in pids if name not in ("client", "simulator"))
                before = thread_cpu_seconds(pids[server])
                sample = await timed(n, transfer_once, seconds=seconds, warmup=warmup, pids=pids)
                # where the server's CPU goes: its event loop, gRPC core's threads, the journal's thread
                # (the warm-up is in the window too: a share, next to the process's figure)
                after = thread_cpu_seconds(pids[server])
                share = sum(after.values()) - sum(before.values())
                total = sample.cpu_ms_per_op.get(server, 0.0)
                for group, spent in after.items():
                    used = spent - before.get(group, 0.0)
                    if share > 0 and used > 0:
                        sample.cpu_ms_per_op[f"{server}: {group}"] = total * used / share
                return sample

        # the floor: the same calls through a forwarder that does nothing but forward (bench/roles.py)
        forwarder, fw_info = spawn("bare-forwarder", ws_url=sim_info["ws"], token=DEFAULT_AGENT_TOKEN)
        procs.append(forwarder)
        floor_name = f"floor: bare gRPC->WS forwarder, {n} in flight"
        floor = await transfers(
            fw_info["addr"], {"client": me, "forwarder": forwarder.pid, "simulator": sim.pid}
        )
        results.rate(
            GROUP,
            floor_name,
            floor,
            unit="rpc/s",
            baseline=echo_name,
            note="the same Transfer calls to the same simulator; no journal, no checks, no limiter",
        )
        forwarder.terminate()  # (a profiled forwarder writes its profile on SIGTERM)

        sample = await transfers(
            gw_info["addr"], {"client": me, "gateway": gateway.pid, "simulator": sim.pid}
        )
        results.rate(
            GROUP,
            f"gateway Transfer (gRPC->WS->Deriv sim), {n} in flight",
            sample,
            unit="rpc/s",
            baseline=echo_name,
            goal=GATEWAY_GOAL,
            note=f"journal {journal.split(':', 1)[0]}, compression {'on' if compression else 'off'}; "
            f"{sample.rate / floor.rate:.2f} of the bare forwarder",
        )
        rest_sample = await transfers(
            gw_info["addr"], {"client": me, "gateway": gateway.pid, "simulator": sim.pid}, rest=True
        )
        results.rate(
            GROUP,
            f"gateway Transfer over REST (gRPC->HTTP->sim), {n} in flight",
            rest_sample,
            unit="rpc/s",
            baseline=echo_name,
            note=f"the same gateway and journal, api=DERIV_API_REST by nickname (token limiter off); "
            f"{rest_sample.rate / sample.rate:.2f} of the v3 gateway, "
            f"{rest_sample.rate / floor.rate:.2f} of the bare forwarder",
        )
        async with aiohttp.ClientSession() as http, http.get(f"{sim_info['control']}/books/summary") as r:
            summary = await r.json()
        if not summary.get("balanced"):
            results.notes.append(f"gateway: simulator books NOT balanced after the run: {summary}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--database-url", help="journal database (default: a temporary SQLite file)")
    parser.add_argument(
        "--compression",
        type=int,
        default=0,
        choices=[0, 1],
        help="permessage-deflate on the WebSockets (Deriv offers it); default off",
    )
    args = parser.parse_args()
    results = Results()
    asyncio.run(
        run_gateway_group(
            args,
            results,
            inflight=args.inflight,
            compression=bool(args.compression),
            database_url=args.database_url,
        )
    )
    from bench.machine import facts
    from bench.scratch import DEFAULT_ADMIN_URL

    print_table(results, facts(admin_url=DEFAULT_ADMIN_URL, redis_url="redis://127.0.0.1:6379/0"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
