"""Servers the benchmark runs in child processes, one process each, so the load generator (this
process) and each server have their own interpreter and GIL, as in production.

    spawn("grpc-echo") -> (process, {"addr": "127.0.0.1:NNNN"})

A role prints one JSON line with its addresses once it serves, then runs until killed.
Run as `python -m bench.roles ROLE '{"json": "args"}'`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ECHO_METHOD = "/bench.Echo/Echo"


def _ready(info: dict[str, Any]) -> None:
    print(json.dumps(info), flush=True)


async def deriv_sim(
    compression: bool = False, enforce_limits: bool = False, seed: int = 3, rest: bool = False
) -> None:
    from deriv_gateway.simulator import DerivSimulator, RateLimitConfig, SimulatorConfig
    from deriv_gateway.simulator.rest import DerivRestSimulator, RestConfig, RestServerConfig

    limits = (
        RateLimitConfig()
        if enforce_limits
        else RateLimitConfig(
            general_minutely=10**8,
            general_hourly=10**9,
            outcome_minutely=10**8,
            outcome_hourly=10**9,
            ping_per_second=10**6,
        )
    )
    config = SimulatorConfig(port=0, control_port=0, seed=seed, compression=compression, rate_limits=limits)
    async with DerivSimulator(config) as sim:
        info = {"ws": sim.url(app_id=None), "control": sim.control_url}
        if rest:
            # the REST API on the same books; its 60-a-minute token limit off, as the v3 limits
            api = RestConfig(rate_limit_enabled=enforce_limits)
            rest_sim = DerivRestSimulator(sim, RestServerConfig(port=0, api=api))
            await rest_sim.start()
            info["rest"] = rest_sim.base_url
        _ready(info)
        await asyncio.Event().wait()


async def gateway(ws_url: str, database_url: str, compression: bool = False, rest_url: str = "") -> None:
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
        rest_base_url=rest_url,
        rest_app_id="app-sim-1",
        rest_agent_token="sim-rest-agent-pat",
        rest_per_minute=10**9,  # the simulator's limit is off too: this measures the transport
    )
    server = GatewayServer(config)
    await server.start()
    await server.wait_serving(10)
    _ready({"addr": server.address})
    await asyncio.Event().wait()


async def _serve_unary(service: str, method: str, behaviour: Callable[..., Awaitable[bytes]]) -> None:
    """A bare grpc.aio server of one bytes-in, bytes-out method (no (de)serializers) until killed."""
    import grpc

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        service, {method: grpc.unary_unary_rpc_method_handler(behaviour)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    _ready({"addr": f"127.0.0.1:{port}"})
    await server.wait_for_termination()


async def grpc_echo() -> None:

    async def echo(request: bytes, context: object) -> bytes:
        return request

    await _serve_unary("bench.Echo", "Echo", echo)


async def bare_forwarder(ws_url: str, token: str) -> None:
    """The floor under any gateway on this topology: a grpc.aio Transfer handler that decodes the
    request, sends one paymentagent_transfer frame on one authorized WebSocket to the same simulator
    and answers from the reply. No journal, no fencing, no single-flight, no checks, no rate limiter:
    what the gateway costs beyond this is what its guarantees cost."""
    from websockets.asyncio.client import connect

    from penpay.deriv.v1 import deriv_gateway_pb2 as pb

    waiters: dict[int, asyncio.Future[dict[str, Any]]] = {}
    req_ids = iter(range(1, 1 << 62))
    loop = asyncio.get_running_loop()
    ws = await connect(f"{ws_url}?app_id=1089&l=EN", compression=None, max_queue=None, proxy=None)

    async def reader() -> None:
        async for text in ws:
            reply = json.loads(text)
            waiter = waiters.pop(reply.get("req_id", 0), None)
            if waiter is not None:
                waiter.set_result(reply)

    async def call(request: dict[str, Any]) -> dict[str, Any]:
        req_id = next(req_ids)
        waiter = waiters[req_id] = loop.create_future()
        await ws.send(json.dumps({**request, "req_id": req_id}))
        reply: dict[str, Any] = await waiter
        return reply

    reading = asyncio.create_task(reader())
    if "error" in await call({"authorize": token}):
        raise RuntimeError("the forwarder's agent token was refused")

    async def transfer(raw: bytes, context: object) -> bytes:
        request = pb.TransferRequest.FromString(raw)
        reply = await call(
            {
                "paymentagent_transfer": 1,
                "amount": request.amount.amount_cents / 100,
                "currency": request.amount.currency,
                "transfer_to": request.client_loginid,
                "description": f"PenPay {request.transfer_id}",
            }
        )
        answer: bytes = pb.TransferResponse(
            transfer_id=request.transfer_id,
            deriv_transaction_id=reply["transaction_id"],
            client_loginid=request.client_loginid,
            client_full_name=reply.get("client_to_full_name", ""),
            amount=request.amount,
        ).SerializeToString()
        return answer

    try:
        await _serve_unary("penpay.deriv.v1.DerivGatewayService", "Transfer", transfer)
    finally:
        reading.cancel()


async def ws_echo(compression: bool = False) -> None:
    from websockets.asyncio.server import serve

    async def handler(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(handler, "127.0.0.1", 0, compression="deflate" if compression else None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        _ready({"url": f"ws://127.0.0.1:{port}"})
        await asyncio.Event().wait()


async def mpesa_sim() -> None:
    from mpesa_adapter.simulator import DarajaSimulator, SimulatorConfig

    async with DarajaSimulator(SimulatorConfig(port=0, seed=3)) as sim:
        _ready({"url": sim.base_url})
        await asyncio.Event().wait()


async def api(settings: dict[str, Any]) -> None:
    """The real public gRPC API (penpay.wiring.api.build_api), as `penpay api` builds it, with
    a cheap Argon2 cost (registering the bench's users is set-up, not what is measured)."""
    import logging
    import os

    import structlog

    from application.payments.floats import fund_new_floats
    from bench import sql_counts
    from domain.wallet.account_kind import AccountKind
    from domain.wallet.money import Currency, Money
    from penpay import bootstrap
    from penpay.settings import Settings
    from penpay.wiring.api import build_api
    from penpay_api.heap import freeze_startup_heap
    from security.passwords import FAST_FOR_TESTS, Argon2idHasher

    BENCH_FLOATS = {
        AccountKind.DERIV_AGENT_FLOAT: Money(10_000_000_00, Currency.USD),
        AccountKind.MPESA_FLOAT: Money(10_000_000_000_00, Currency.KES),
    }
    logging.disable(logging.WARNING)  # request logs would cost the figures their own time
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    core = bootstrap.bootstrap(Settings(**settings))
    counts_path = os.environ.get(sql_counts.ENV)
    if counts_path:
        sql_counts.install(core.engine, counts_path)
    async with core.unit_of_work(actor="bench") as uow:  # payments need floats that can pay them out
        await fund_new_floats(uow, BENCH_FLOATS, "bench opening balance")
        await uow.commit()
    built = build_api(core, hasher=Argon2idHasher(FAST_FOR_TESTS), metrics_addr=None)
    await built.server.start()
    freeze_startup_heap()  # as `penpay api` does
    _ready({"addr": built.server.address})
    await asyncio.Event().wait()


async def bridge(grpc_addr: str) -> None:
    """The HTTP/JSON bridge (`penpay http`) in front of the API at `grpc_addr`."""
    import logging

    import structlog

    from penpay_api.http import build_app, discover_services, start_server
    from penpay_api.http.discovery import DEFAULT_PACKAGES

    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    app = build_app(discover_services((*DEFAULT_PACKAGES, "penpay.dev.v1")), grpc_addr)
    _runner, port = await start_server(app, "127.0.0.1", 0)
    _ready({"url": f"http://127.0.0.1:{port}"})
    await asyncio.Event().wait()


ROLES: dict[str, Callable[..., Coroutine[Any, Any, None]]] = {
    "deriv-sim": deriv_sim,
    "gateway": gateway,
    "grpc-echo": grpc_echo,
    "ws-echo": ws_echo,
    "bare-forwarder": bare_forwarder,
    "mpesa-sim": mpesa_sim,
    "api": api,
    "bridge": bridge,
}


def spawn(
    role: str, env: dict[str, str] | None = None, wrapper: list[str] | None = None, **kwargs: Any
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start `role` in a child process (under `wrapper`, e.g. valgrind, when given); returns it and
    the addresses it printed. Its output after that line is drained (a full pipe would stall it)
    into a log file kept for a failed start."""
    log = tempfile.NamedTemporaryFile(prefix=f"penpay-bench-{role}-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [*(wrapper or []), sys.executable, "-m", "bench.roles", role, json.dumps(kwargs)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    text = proc.stdout.readline()
    if not text:
        proc.wait(10)
        raise RuntimeError(f"bench role {role} did not start:\n{Path(log.name).read_text()[-3000:]}")
    threading.Thread(target=_drain, args=(proc.stdout, log.name), daemon=True).start()
    info = json.loads(text)
    info["log"] = log.name
    return proc, info


def _drain(stream: Any, path: str) -> None:
    with open(path, "a") as out:
        for text in stream:
            out.write(text)


@contextmanager
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Every child appended to the list is killed on the way out, whatever happened."""
    procs: list[subprocess.Popen[str]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            proc.terminate()  # a profiled role writes its profile on SIGTERM
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _profile_until_terminated(role: str, directory: str) -> None:
    """cProfile of this role's main thread (its CPU clock, so waiting costs nothing), written to
    `directory/<role>-<pid>.prof` when the role is terminated (SIGTERM): `processes()` ends the
    children that way first. Read with `python -m pstats` or snakeviz."""
    import cProfile
    import os
    import signal
    import time

    profile = cProfile.Profile(time.thread_time)

    def dump(*_: object) -> None:
        profile.disable()
        profile.dump_stats(os.path.join(directory, f"{role}-{os.getpid()}.prof"))
        os._exit(0)

    signal.signal(signal.SIGTERM, dump)
    profile.enable()


def main() -> int:
    import os

    role, args = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    profile_dir = os.environ.get("PENPAY_BENCH_PROFILE")
    profiled = os.environ.get("PENPAY_BENCH_PROFILE_ROLES", "gateway,bare-forwarder").split(",")
    if profile_dir and role in profiled:
        _profile_until_terminated(role, profile_dir)
    from penpay import event_loop

    event_loop.run(ROLES[role](**args))  # the loop `penpay` runs its processes on
    return 0


if __name__ == "__main__":
    sys.exit(main())
