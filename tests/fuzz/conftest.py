"""Fuzz harness: hypothesis drives real servers on real sockets.

The servers run on the test's event loop; hypothesis runs in a worker thread and hands each example's
coroutine to that loop (`Bridge`), so async fixtures and sync `@given` functions meet without a second
loop. Examples per target: PENPAY_FUZZ_EXAMPLES (default below). The number tried per target is printed
and listed in the terminal summary.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import grpc
import pytest
import structlog
from hypothesis import HealthCheck, settings

from deriv_gateway.config import GatewayConfig
from deriv_gateway.server import GatewayServer
from deriv_gateway.simulator import DEFAULT_AGENT_TOKEN, DEFAULT_CLIENTS, DerivSimulator, SimulatorConfig
from deriv_gateway.simulator.config import RateLimitConfig
from penpay.deriv.v1 import deriv_gateway_pb2_grpc as pb_grpc
from tests.deriv_gateway.conftest import FrameLog, Sim
from tests.fuzz.gateway_harness import FAKE_CODE, Gateway, still_serving
from tests.mpesa_adapter.conftest import Harness, build_harness, make_engine

T = TypeVar("T")

FUZZ_EXAMPLES = int(os.environ.get("PENPAY_FUZZ_EXAMPLES", "80"))
TRIED: Counter[str] = Counter()


def fuzz_settings(examples: int = FUZZ_EXAMPLES) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


class Bridge:
    """Runs a coroutine on the test's loop from hypothesis' thread and waits for it (bounded)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def __call__(self, coro: Awaitable[T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]


@pytest.fixture
async def bridge() -> Bridge:
    return Bridge(asyncio.get_running_loop())


async def fuzz(target: str, run: Callable[[], Any]) -> int:
    """Run a hypothesis test function off the loop; returns (and prints) how many examples it tried."""
    before = TRIED[target]
    await asyncio.to_thread(run)
    tried = TRIED[target] - before
    print(f"\nfuzz {target}: {tried} examples")
    assert tried > 0, f"fuzz {target}: no example ran"
    return tried


# --- the M-Pesa callback server on MariaDB, with the Daraja simulator ----------------------------


@pytest.fixture
async def h(fresh_mariadb_url: str, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Harness]:
    caplog.set_level(logging.DEBUG, logger="penpay")
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    engine = await make_engine(fresh_mariadb_url)
    secret = ""
    async for harness in build_harness(engine, server_overrides={"trusted_proxies": "127.0.0.1"}):
        secret = harness.secret
        yield harness
    await engine.dispose()
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    leaked = [r.getMessage() for r in records if secret in r.getMessage()]
    assert records and not leaked, f"the path secret was logged: {leaked[:3]}"


# --- the Deriv gateway on MariaDB, with the Deriv simulator ---------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    # Rate limits off: every refusal seen here must come from validation, never from a limit.
    config = SimulatorConfig(
        port=0, control_port=0, seed=23, request_timeout=3.0, rate_limits=RateLimitConfig(enabled=False)
    )
    async with DerivSimulator(config) as simulator, aiohttp.ClientSession() as http:
        yield Sim(simulator, http)


@pytest.fixture
def frames() -> Iterator[FrameLog]:
    log = FrameLog()
    yield log
    problems = log.problems()
    assert not problems, "frames violating the official Deriv schemas:\n" + "\n".join(problems[:20])


@pytest.fixture
async def gw(
    sim: Sim,
    frames: FrameLog,
    fresh_mariadb_url: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[Gateway]:
    structlog.reset_defaults()  # log lines to stdout, read below
    config = GatewayConfig(
        ws_url=sim.ws_url,
        app_id="1089",
        agent_token=DEFAULT_AGENT_TOKEN,
        grpc_addr="127.0.0.1:0",
        database_url=fresh_mariadb_url,
        request_timeout=5.0,
        client_timeout=5.0,
        backoff_initial=0.05,
        backoff_max=0.5,
        # off, as the simulator's limits are: a thousand refused transfers would otherwise meet the
        # client-side limiter (RESOURCE_EXHAUSTED) instead of Deriv's refusal
        rate_limit_enabled=False,
        frame_observer=frames,
    )
    server = GatewayServer(config)
    await server.start()
    await server.wait_serving(10)
    channel = grpc.aio.insecure_channel(server.address)
    gateway = Gateway(server, channel, pb_grpc.DerivGatewayServiceStub(channel))
    try:
        yield gateway
        await still_serving(gateway, sim)
    finally:
        await channel.close()
        await server.stop(grace=0.2)
    out = capsys.readouterr()
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    text = out.out + out.err + "\n".join(r.getMessage() for r in records)
    secrets = {DEFAULT_AGENT_TOKEN, *DEFAULT_CLIENTS.values(), FAKE_CODE}
    secrets |= {t for t in gateway.tokens_seen if len(t) >= 20}  # long enough to be nothing else
    leaked = sorted(s for s in secrets if s in text)
    assert not leaked, f"tokens in the logs: {leaked[:3]}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TRIED:
        terminalreporter.section("fuzz examples tried")
        for target, count in sorted(TRIED.items()):
            terminalreporter.write_line(f"{target}: {count}")
