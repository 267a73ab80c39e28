"""Test helpers for the Deriv simulator.

A WebSocket client that checks every message it receives against Deriv's official receive.json schemas
(read from the shared anchors, never copied into the project), and a control API client.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection

from deriv_gateway.simulator import DerivSimulator, RateLimitConfig, SimulatorConfig

REPO = Path(__file__).resolve().parents[2]


def schema_dir() -> Path:
    shared = os.environ.get("PENPAY_SHARED_DIR")
    base = Path(shared) if shared else REPO / ".." / "shared"
    return (base / "anchors" / "deriv-api-schemas").resolve()


def have_schemas() -> bool:
    return (schema_dir() / "ping" / "receive.json").is_file()


@cache
def load_schema(call: str, kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((schema_dir() / call / f"{kind}.json").read_text())
    return schema


@cache
def receive_validator(call: str) -> Any:
    import jsonschema  # type: ignore[import-untyped]  # no stubs in the locked dev tools

    schema = load_schema(call, "receive")
    if call == "account_list":
        # The official schema is self-contradictory: it requires "broker_code" in each item but only lists
        # "broker" with additionalProperties false, so no non-empty list can pass. We send "broker" (as
        # authorize.account_list does) and check everything else.
        schema = json.loads(json.dumps(schema))
        items = schema["properties"]["account_list"]["items"]
        items["required"] = [r for r in items["required"] if r != "broker_code"]
    return jsonschema.Draft4Validator(schema)


VALIDATED: dict[str, int] = {}


def check_message(message: dict[str, Any]) -> None:
    """Every message: the envelope Deriv's clients rely on, and its call's receive.json."""
    assert isinstance(message, dict)
    assert "echo_req" in message and isinstance(message["echo_req"], dict), message
    assert isinstance(message.get("msg_type"), str), message
    if "req_id" in message:
        assert isinstance(message["req_id"], int)
    if "error" in message:
        error = message["error"]
        assert set(error) <= {"code", "message", "details"}, error
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
        if "details" in error:
            assert error["details"], "details only when non-empty"
    msg_type = message["msg_type"]
    if msg_type == "error" or not have_schemas():
        return
    validator = receive_validator(msg_type)
    errors = sorted(validator.iter_errors(message), key=str)
    assert not errors, f"{msg_type} reply does not match receive.json: {errors[0].message}\n{message}"
    VALIDATED[msg_type] = VALIDATED.get(msg_type, 0) + 1


class Client:
    """A thin test client: `call` sends with an auto req_id and returns the reply; other messages
    (streams, duplicates) wait in `inbox`."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: list[dict[str, Any]] = []
        self._next = 1

    async def _read(self, timeout: float) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        message: dict[str, Any] = json.loads(raw)
        check_message(message)
        return message

    async def send(self, request: Any) -> None:
        await self.ws.send(request if isinstance(request, str) else json.dumps(request))

    async def call(self, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        request = dict(request)
        if "req_id" not in request:
            request["req_id"] = self._next
            self._next += 1
        rid = request["req_id"]
        await self.send(request)
        for i, message in enumerate(self.inbox):
            if message.get("req_id") == rid:
                return self.inbox.pop(i)
        while True:
            message = await self._read(timeout)
            if message.get("req_id") == rid:
                return message
            self.inbox.append(message)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        if self.inbox:
            return self.inbox.pop(0)
        return await self._read(timeout)

    async def stream(self, msg_type: str, timeout: float = 5.0) -> dict[str, Any]:
        for i, message in enumerate(self.inbox):
            if message.get("msg_type") == msg_type and "subscription" in message:
                return self.inbox.pop(i)
        while True:
            message = await self._read(timeout)
            if message.get("msg_type") == msg_type and "subscription" in message:
                return message
            self.inbox.append(message)

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Everything that arrives within `seconds` (asserting silence is `== []`)."""
        got = list(self.inbox)
        self.inbox.clear()
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            try:
                got.append(await self._read(left))
            except TimeoutError:
                break
        return got

    async def login(self, token: str) -> dict[str, Any]:
        reply = await self.call({"authorize": token})
        assert "error" not in reply, reply
        authorize: dict[str, Any] = reply["authorize"]
        return authorize


def fast_config(**overrides: Any) -> SimulatorConfig:
    base: dict[str, Any] = {
        "port": 0,
        "control_port": 0,
        "seed": 1,
        "rate_limits": RateLimitConfig(enabled=False),
    }
    base.update(overrides)
    return SimulatorConfig(**base)


class Control:
    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base
        self.http = http

    async def get(self, path: str, **params: Any) -> Any:
        async with self.http.get(self.base + path, params=params) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def post(self, path: str, body: Any = None, status: int | None = None) -> Any:
        async with self.http.post(self.base + path, json=body if body is not None else {}) as resp:
            if status is not None:
                assert resp.status == status, await resp.text()
            else:
                assert resp.status in (200, 201), await resp.text()
            return await resp.json()

    async def delete(self, path: str) -> Any:
        async with self.http.delete(self.base + path) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def code(self, loginid: str) -> str:
        box = await self.get(f"/mailbox/{loginid}")
        assert box["latest"], box
        return str(box["latest"])


# The conftest's factories: make_sim(**SimulatorConfig overrides) and
# connect_client(sim, token=None, **connect options).
MakeSim = Callable[..., Awaitable[DerivSimulator]]
ConnectClient = Callable[..., Awaitable[Client]]


def control_for(sim: DerivSimulator, http: aiohttp.ClientSession) -> Control:
    assert sim.control_url
    return Control(sim.control_url, http)


AGENT = "CR90000000"
AGENT_TOKEN = "sim-agent-token"
ALICE = "CR90000001"
ALICE_TOKEN = "sim-client1-token"
ALICE_EMAIL = "alice@clients.sim"
