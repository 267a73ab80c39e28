"""Gateway test harness: the real Deriv simulator on a socket, a real journal database, gRPC over TCP.

Every frame the gateway sends and every simulator reply it receives during a test is checked against
Deriv's official JSON schemas (shared/anchors/deriv-api-schemas) when the test finishes.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import jsonschema  # type: ignore[import-untyped]  # no stubs in the locked dev tools
import pytest

from deriv_gateway.config import GatewayConfig
from deriv_gateway.journal import Journal, Operation
from deriv_gateway.server import GatewayServer
from deriv_gateway.simulator import DEFAULT_AGENT_TOKEN, Clock, DerivSimulator, SimulatorConfig
from penpay.deriv.v1 import deriv_gateway_pb2_grpc as pb_grpc
from tests.conftest import SHARED_DIR

SCHEMAS = SHARED_DIR / "anchors" / "deriv-api-schemas"


@cache
def _validator(call: str, direction: str) -> jsonschema.Draft4Validator | None:
    path = SCHEMAS / call / ("send.json" if direction == "send" else "receive.json")
    if not path.exists():
        return None
    return jsonschema.Draft4Validator(json.loads(path.read_text()))


def _call_of(frame: dict[str, Any], direction: str) -> str | None:
    if direction == "recv":
        return str(frame.get("msg_type"))
    for key in frame:
        if (SCHEMAS / key / "send.json").exists():
            return key
    return None


class FrameLog:
    """Collects (direction, frame) from the gateway's observer hook."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, direction: str, frame: dict[str, Any]) -> None:
        self.frames.append((direction, json.loads(json.dumps(frame))))

    def sent(self, call: str) -> list[dict[str, Any]]:
        return [f for d, f in self.frames if d == "send" and call in f]

    def problems(self) -> list[str]:
        out = []
        for direction, frame in self.frames:
            call = _call_of(frame, direction)
            if direction == "recv" and call == "error":
                # top-level errors (Timeout, UnrecognisedRequest) have no receive schema: check the envelope
                if not {"echo_req", "msg_type", "error"} <= set(frame):
                    out.append(f"error frame without envelope: {frame}")
                continue
            validator = _validator(call, direction) if call else None
            if validator is None:
                out.append(f"no official schema for {direction} frame {call!r}")
                continue
            for error in validator.iter_errors(frame):
                out.append(f"{direction} {call}: {error.message} at {list(error.path)}")
        return out


class Sim:
    """The simulator plus its HTTP control API."""

    def __init__(self, sim: DerivSimulator, http: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.http = http
        self.base = sim.control_url

    @property
    def ws_url(self) -> str:
        return self.sim.url(app_id=None)

    async def get(self, path: str, **params: Any) -> Any:
        async with self.http.get(f"{self.base}{path}", params=params) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def post(self, path: str, body: Any = None) -> Any:
        async with self.http.post(f"{self.base}{path}", json=body or {}) as r:
            assert r.status in (200, 201), await r.text()
            return await r.json()

    async def fault(self, **rule: Any) -> Any:
        return await self.post("/faults", rule)

    async def executed(self, description: str) -> int:
        """How many transfers/withdrawals with this description the simulator's books executed."""
        books = await self.get("/books/transfers", description_contains=description)
        return int(books["count"])

    async def drop_connections(self) -> int:
        return int((await self.post("/connections/drop")).get("dropped", 0))


class WorldClock:
    """The gateway's clock on the simulator's time (domain.shared.clock.Clock): what a test
    advances moves Deriv's statement and the gateway's settle windows together, with no waiting
    (asyncio's own timeouts and sleeps stay real)."""

    def __init__(self, simulated: Clock) -> None:
        self._simulated = simulated

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._simulated.now(), UTC)

    def advance(self, seconds: float) -> None:
        self._simulated.advance(seconds)


@pytest.fixture
def world_clock(sim: Sim) -> WorldClock:
    return WorldClock(sim.sim.engine.clock)


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    config = SimulatorConfig(port=0, control_port=0, seed=11, request_timeout=3.0)
    async with DerivSimulator(config) as simulator, aiohttp.ClientSession() as http:
        yield Sim(simulator, http)


@pytest.fixture(params=["mariadb", "sqlite"])
def journal_url(request: pytest.FixtureRequest) -> str:
    """The journal on a fresh MariaDB database and on a SQLite file.

    Fresh, because the journal's state is global: its fence (the highest fencing token seen) and the
    sweep of SENDING rows a new leader runs would meet other tests' rows and tokens.
    """
    if request.param == "mariadb":
        return str(request.getfixturevalue("fresh_mariadb_url"))
    return str(request.getfixturevalue("sqlite_url"))


@pytest.fixture
def frames() -> Iterator[FrameLog]:
    log = FrameLog()
    yield log
    problems = log.problems()
    assert not problems, "frames violating the official Deriv schemas:\n" + "\n".join(problems[:20])
    assert log.frames, "no frames observed"


@pytest.fixture
def make_config(sim: Sim, frames: FrameLog, sqlite_url: str) -> Callable[..., GatewayConfig]:
    def make(**overrides: Any) -> GatewayConfig:
        values: dict[str, Any] = {
            "ws_url": sim.ws_url,
            "app_id": "1089",
            "agent_token": DEFAULT_AGENT_TOKEN,
            "grpc_addr": "127.0.0.1:0",
            "database_url": sqlite_url,
            "request_timeout": 5.0,
            "backoff_initial": 0.05,
            "backoff_max": 0.5,
            "frame_observer": frames,
        }
        values.update(overrides)
        return GatewayConfig(**values)

    return make


class Running:
    def __init__(self, server: GatewayServer, channel: grpc.aio.Channel) -> None:
        self.server = server
        self.channel = channel
        self.stub = pb_grpc.DerivGatewayServiceStub(channel)


# start_gateway(wait=True, lease=None, clock=None, **GatewayConfig overrides): a running gateway and a
# channel to it (`clock`: the gateway's, e.g. a WorldClock).
StartGateway = Callable[..., Awaitable["Running"]]


@pytest.fixture
async def start_gateway(make_config: Callable[..., GatewayConfig]) -> AsyncIterator[StartGateway]:
    running: list[Running] = []

    async def start(wait: bool = True, **overrides: Any) -> Running:
        lease = overrides.pop("lease", None)
        clock = overrides.pop("clock", None)
        server = GatewayServer(make_config(**overrides), lease=lease, clock=clock)
        await server.start()
        if wait:
            await server.wait_serving(10)
        channel = grpc.aio.insecure_channel(server.address)
        item = Running(server, channel)
        running.append(item)
        return item

    yield start
    for item in running:
        await item.channel.close()
        await item.server.stop(grace=0.2)
        for overrun in item.server.stop_overruns:
            # left behind, not failed: the test's subject is not the stop (test_gateway_stop.py is)
            warnings.warn(f"gateway stop: {overrun.step} overran, at {overrun.waiting_at}", stacklevel=1)


def shared_schema_dir() -> Path:
    return SCHEMAS


async def journaled(journal: Journal, operation_id: str) -> Operation:
    """The journal's row of an operation the test knows was journaled."""
    row = await journal.get(operation_id)
    assert row is not None, f"{operation_id} is not in the journal"
    return row


def lease_token(server: GatewayServer) -> int:
    """The fencing token of a gateway that holds its lease."""
    token = server.lease.token
    assert token is not None, "the gateway does not hold its lease"
    return token
