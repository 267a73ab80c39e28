"""REST harness: the v3 simulator and its REST side on real sockets, one set of books, a fixed clock.

Every request the client sends and every answer the simulator gives during a test is checked
against Deriv's OpenAPI document (shared/anchors/deriv-rest/schemas, never copied into the
project) when the test finishes; without the document these tests skip.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from deriv_gateway.rest import DerivRestClient
from deriv_gateway.simulator import Clock, DerivSimulator, SimulatorConfig
from deriv_gateway.simulator.rest import DerivRestSimulator, RestConfig, RestServerConfig
from deriv_gateway.simulator.rest.openapi import OpenApi
from tests.conftest import SHARED_DIR

OPENAPI = SHARED_DIR / "anchors" / "deriv-rest" / "schemas" / "rest-api-openapi.json"
EPOCH = 1_800_000_000.0  # the simulated "now": no test reads the wall clock
AGENT = "sim-rest-agent-pat"
ALICE = "sim-rest-client1-pat"


class FixedClock(Clock):
    """The simulator's clock without the wall clock: EPOCH plus what the test advanced."""

    def now(self) -> float:
        return EPOCH + self.offset


class World:
    def __init__(self, v3: DerivSimulator, rest: DerivRestSimulator, http: aiohttp.ClientSession) -> None:
        self.v3 = v3
        self.rest = rest
        self.http = http
        self.clock = v3.engine.clock
        self.sent: list[dict[str, Any]] = []

    def client(self, **kw: Any) -> DerivRestClient:
        async def sleep(seconds: float) -> None:
            # time passes for the simulator (pending settles, windows move) without waiting
            self.clock.advance(seconds)

        kw.setdefault("clock", self.clock.now)
        kw.setdefault("sleep", sleep)
        kw.setdefault("max_wait", 0.0)
        kw.setdefault("observer", lambda d, r: self.sent.append(r) if d == "send" else None)
        return DerivRestClient(self.rest.base_url, "app-sim-1", **kw)

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, f"{self.rest.base_url}/__control__{path}", json=body) as r:
            assert r.status in (200, 201), await r.text()
            return await r.json()

    async def fault(self, **rule: Any) -> Any:
        return await self.control("POST", "/faults", rule)

    async def generation(self, name: str) -> None:
        await self.control("POST", "/config", {"generation": name})

    def executed(self, request_id: str) -> int:
        """Transfers and withdrawals the shared books hold under this request_id."""
        return len(self.v3.engine.books.find_transfers(reference=request_id))

    def posts(self, path: str) -> int:
        return sum(1 for e in self.rest.wire if e["method"] == "POST" and e["path"] == path)

    def latest_code(self, loginid: str) -> str:
        mails = [m for m in self.v3.engine.books.mailbox if m.loginid == loginid and m.status == "active"]
        return mails[-1].code


def schema_problems(rest: DerivRestSimulator, document: OpenApi) -> list[str]:
    problems = list(rest.api.violations)
    for ex in rest.wire:
        view = document.for_generation("newer")
        if ex["body"] is not None:
            problems += view.check_request(ex["method"], ex["path"], ex["body"])
        if not ex["dropped"] and ex["status"] not in (404, 429):
            found = view.check_response(ex["method"], ex["path"], ex["status"], ex["reply"])
            # a June-generation answer is checked against the June document
            if found:
                found = document.for_generation("june").check_response(
                    ex["method"], ex["path"], ex["status"], ex["reply"]
                )
            problems += found
    return problems


@pytest.fixture
async def world() -> AsyncIterator[World]:
    if not OPENAPI.exists():
        pytest.skip(f"Deriv's OpenAPI document is not at {OPENAPI}")
    config = SimulatorConfig(port=0, control_port=0, seed=15, transaction_id_start=5_000_000_001)
    v3 = DerivSimulator(config, clock=FixedClock())
    await v3.start()
    rest = DerivRestSimulator(v3, RestServerConfig(port=0, openapi=OPENAPI, api=RestConfig()))
    await rest.start()
    async with aiohttp.ClientSession() as http:
        w = World(v3, rest, http)
        yield w
    await rest.stop()
    await v3.stop()
    problems = schema_problems(rest, OpenApi.load(OPENAPI))
    assert not problems, problems[:10]
    assert v3.engine.books.summary()["balanced"]
