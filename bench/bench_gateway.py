"""Benchmark: Transfer RPCs/s through gRPC -> gateway -> WebSocket -> Deriv simulator, with N in flight,
beside a raw grpcio unary echo and a raw websockets round trip measured in the same run.

    .venv/bin/python -m bench.bench_gateway [--inflight 64] [--seconds 5] [--database-url URL]

Every server (simulator, gateway, echo servers) runs in a process of its own, the load generator in this
one, so the three measurements share one topology: client process -> server process (-> simulator process).
Absolute numbers drift between runs on this machine: read the ratios. Bounded: well under 60 s.
The CPU columns (Linux) say where the time goes: CPU milliseconds per operation of the load generator,
the server (echo server or gateway) and the simulator; the journal database's own CPU is not included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ECHO_METHOD = "/bench.Echo/Echo"


# --- server roles (run in child processes) ---------------------------------------------------------


async def _role_sim(compression: bool) -> None:
    from deriv_gateway.simulator import DerivSimulator, RateLimitConfig, SimulatorConfig

    limits = RateLimitConfig(
        general_minutely=10**8,
        general_hourly=10**9,
        outcome_minutely=10**8,
        outcome_hourly=10**9,
        ping_per_second=10**6,
    )
    config = SimulatorConfig(port=0, control_port=0, seed=3, compression=compression, rate_limits=limits)
    async with DerivSimulator(config) as sim:
        print(json.dumps({"ws": sim.url(app_id=None), "control": sim.control_url}), flush=True)
        await asyncio.Event().wait()


async def _role_gateway(ws_url: str, database_url: str, compression: bool) -> None:
    from deriv_gateway import logs
    from deriv_gateway.config import GatewayConfig
    from deriv_gateway.server import GatewayServer
    from deriv_gateway.simulator import DEFAULT_AGENT_TOKEN

    logs.configure("WARNING")
    config = GatewayConfig(
        ws_url=ws_url,
        app_id="1089",
        agent_token=DEFAULT_AGENT_TOKEN,
        grpc_addr="127.0.0.1:0",
        database_url=database_url,
        compression=compression,
    )
    server = GatewayServer(config)
    await server.start()
    await server.wait_serving(10)
    print(json.dumps({"addr": server.address}), flush=True)
    await asyncio.Event().wait()


async def _role_grpc_echo() -> None:
    import grpc

    async def echo(request: bytes, context: object) -> bytes:
        return request

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(json.dumps({"addr": f"127.0.0.1:{port}"}), flush=True)
    await server.wait_for_termination()


async def _role_ws_echo(compression: bool) -> None:
    from websockets.asyncio.server import serve

    async def handler(ws: object) -> None:
        async for message in ws:  # type: ignore[attr-defined]
            await ws.send(message)  # type: ignore[attr-defined]

    async with serve(handler, "127.0.0.1", 0, compression="deflate" if compression else None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(json.dumps({"url": f"ws://127.0.0.1:{port}"}), flush=True)
        await asyncio.Event().wait()


# --- load generation -------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _run_load(
    n: int,
    seconds: float,
    warmup: float,
    one: Callable[[], Awaitable[None]],
    pids: dict[str, int] | None = None,
) -> tuple[float, float, dict[str, float]]:
    """(ops/s, p99 ms, CPU ms per op of each process in `pids`) with n concurrent loops, after a warm-up."""
    stop_at = 0.0
    measuring = False
    latencies: list[float] = []
    count = 0

    async def worker() -> None:
        nonlocal count
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            await one()
            if measuring:
                latencies.append(time.perf_counter() - t0)
                count += 1

    stop_at = time.monotonic() + warmup
    await asyncio.gather(*(worker() for _ in range(n)))
    measuring = True
    pids = pids or {}
    cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    stop_at = started + seconds
    await asyncio.gather(*(worker() for _ in range(n)))
    elapsed = time.monotonic() - started
    cpu = {name: (_cpu_seconds(pid) - cpu_before[name]) * 1000 / max(count, 1) for name, pid in pids.items()}
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan")
    return count / elapsed, p99, cpu


def _spawn(role: str, *args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_gateway", "--role", role, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{role} did not start")
    return proc, json.loads(line)


async def _bench(args: argparse.Namespace) -> None:
    import aiohttp
    import grpc
    from websockets.asyncio.client import connect

    from penpay.common.v1 import money_pb2
    from penpay.deriv.v1 import deriv_gateway_pb2 as pb
    from penpay.deriv.v1 import deriv_gateway_pb2_grpc as pb_grpc

    compression = "1" if args.compression else "0"
    procs: list[subprocess.Popen[str]] = []
    tmp = tempfile.mkdtemp(prefix="penpay-bench-")
    database_url = args.database_url or f"sqlite+aiosqlite:///{tmp}/journal.db"
    try:
        if not args.database_url:
            from persistence import migrate

            await asyncio.to_thread(migrate.upgrade, database_url)
        sim, sim_info = _spawn("sim", "--compression", compression)
        procs.append(sim)
        async with aiohttp.ClientSession() as http:  # the agent needs a balance for the whole run
            async with http.post(
                f"{sim_info['control']}/accounts/CR90000000/adjust",
                json={"amount": "100000000.00", "note": "bench float"},
            ) as r:
                r.raise_for_status()
        gateway, gw_info = _spawn(
            "gateway",
            "--ws-url",
            sim_info["ws"],
            "--database-url",
            database_url,
            "--compression",
            compression,
        )
        procs.append(gateway)
        echo, echo_info = _spawn("grpc-echo")
        procs.append(echo)
        ws_echo, ws_info = _spawn("ws-echo", "--compression", compression)
        procs.append(ws_echo)

        n, seconds, warmup = args.inflight, args.seconds, args.warmup
        results: dict[str, tuple[float, float, dict[str, float]]] = {}
        me = os.getpid()

        # raw grpcio unary echo, same payload size as a TransferRequest
        sample = pb.TransferRequest(
            transfer_id=str(uuid.uuid4()),
            client_loginid="CR90000001",
            amount=money_pb2.Money(amount_cents=1000, currency="USD"),
        ).SerializeToString()
        async with grpc.aio.insecure_channel(echo_info["addr"]) as channel:
            call = channel.unary_unary(ECHO_METHOD)

            async def echo_once() -> None:
                await call(sample)

            results["grpc unary echo"] = await _run_load(
                n, seconds, warmup, echo_once, {"client": me, "server": echo.pid}
            )

        # raw websockets round trips, n in flight on one connection (correlated by req_id)
        async with connect(
            ws_info["url"], compression="deflate" if args.compression else None, max_queue=None, proxy=None
        ) as ws:
            waiters: dict[int, asyncio.Future[None]] = {}
            counter = iter(range(1, 1 << 62))

            async def reader() -> None:
                async for text in ws:
                    fut = waiters.pop(json.loads(text)["req_id"], None)
                    if fut is not None:
                        fut.set_result(None)

            reader_task = asyncio.create_task(reader())
            frame = {
                "paymentagent_transfer": 1,
                "amount": 10,
                "currency": "USD",
                "transfer_to": "CR90000001",
                "description": f"PenPay {uuid.uuid4()}",
            }

            async def ws_once() -> None:
                req_id = next(counter)
                fut = asyncio.get_running_loop().create_future()
                waiters[req_id] = fut
                await ws.send(json.dumps({**frame, "req_id": req_id}))
                await fut

            results["websockets round trip"] = await _run_load(
                n, seconds, warmup, ws_once, {"client": me, "server": ws_echo.pid}
            )
            reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader_task

        # the real path
        async with grpc.aio.insecure_channel(gw_info["addr"]) as channel:
            stub = pb_grpc.DerivGatewayServiceStub(channel)
            amount = money_pb2.Money(amount_cents=1000, currency="USD")

            async def transfer_once() -> None:
                await stub.Transfer(
                    pb.TransferRequest(
                        transfer_id=str(uuid.uuid4()), client_loginid="CR90000001", amount=amount
                    )
                )

            results["gateway Transfer"] = await _run_load(
                n, seconds, warmup, transfer_once, {"client": me, "server": gateway.pid, "simulator": sim.pid}
            )
            async with aiohttp.ClientSession() as http, http.get(f"{sim_info['control']}/books/summary") as r:
                summary = await r.json()

        base = results["grpc unary echo"][0]
        print(
            f"\nDeriv gateway benchmark: {n} in flight, {seconds:g}s each after {warmup:g}s warm-up, "
            f"compression {'on' if args.compression else 'off'}, journal {database_url.split(':', 1)[0]}, "
            f"{os.cpu_count()} CPUs"
        )
        print(
            f"{'path':<24}{'ops/s':>10}{'p99 ms':>10}{'vs grpc echo':>15}"
            f"   CPU ms/op: {'client':>7}{'server':>8}{'sim':>6}"
        )
        for name, (rate, p99, cpu) in results.items():
            sim_cpu = f"{cpu['simulator']:>6.2f}" if "simulator" in cpu else f"{'':>6}"
            print(
                f"{name:<24}{rate:>10.0f}{p99:>10.1f}{rate / base:>15.2f}"
                f"              {cpu.get('client', 0):>7.2f}{cpu.get('server', 0):>8.2f}{sim_cpu}"
            )
        ratio = results["gateway Transfer"][0] / base
        print(
            f"\ngateway / raw grpcio unary = {ratio:.2f} "
            f"(goal >= 0.70: {'met' if ratio >= 0.7 else 'NOT met'})"
        )
        print(f"simulator books balanced: {summary.get('balanced')}")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(5)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", choices=["sim", "gateway", "grpc-echo", "ws-echo"], help=argparse.SUPPRESS)
    parser.add_argument("--ws-url", help=argparse.SUPPRESS)
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
    if args.role == "sim":
        asyncio.run(_role_sim(bool(args.compression)))
    elif args.role == "gateway":
        asyncio.run(_role_gateway(args.ws_url, args.database_url, bool(args.compression)))
    elif args.role == "grpc-echo":
        asyncio.run(_role_grpc_echo())
    elif args.role == "ws-echo":
        asyncio.run(_role_ws_echo(bool(args.compression)))
    else:
        asyncio.run(_bench(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
