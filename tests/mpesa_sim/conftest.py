"""Fixtures: a simulator on 127.0.0.1:0, a callback receiver on 127.0.0.1:0, and a small Daraja client."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mpesa_adapter.simulator import DarajaSimulator, SimulatorConfig
from mpesa_adapter.simulator.config import SANDBOX_PASSKEY, SANDBOX_SHORTCODE

PHONE = "254708374149"
# The STK Timestamp (EAT): Daraja checks its form and the Password made with it, not its age.
STK_TIMESTAMP = "20261206150000"


@dataclass
class Received:
    path: str
    body: Any


@dataclass
class Receiver:
    """Collects every POST; answers as a merchant should: 200 {"ResultCode": 0, "ResultDesc": "Accepted"}."""

    base_url: str = ""
    items: list[Received] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def url(self, name: str) -> str:
        return f"{self.base_url}/hooks/{name}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        async with self._changed:
            self.items.append(Received(request.match_info["name"], body))
            self._changed.notify_all()
        return web.json_response({"ResultCode": 0, "ResultDesc": "Accepted"})

    def at(self, name: str) -> list[Any]:
        return [r.body for r in self.items if r.path == name]

    async def wait(self, name: str, count: int = 1, timeout: float = 5.0) -> list[Any]:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.at(name)) >= count)
        return self.at(name)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/{name}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    rec.base_url = f"http://{host}:{port}"
    yield rec
    await runner.cleanup()


def fast_config(**overrides: Any) -> SimulatorConfig:
    values: dict[str, Any] = {
        "port": 0,
        "seed": 1,
        "callback_delay": 0.02,
        "late_delay": 0.3,
        "duplicate_gap": 0.02,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


@pytest.fixture
def sim_config() -> SimulatorConfig:
    return fast_config()


@pytest.fixture
async def sim(sim_config: SimulatorConfig) -> AsyncIterator[DarajaSimulator]:
    async with DarajaSimulator(sim_config) as s:
        yield s


class Daraja:
    """Just enough of a client to speak to the simulator as PenPay's adapter would."""

    def __init__(
        self, session: aiohttp.ClientSession, sim: DarajaSimulator, receiver: Receiver | None
    ) -> None:
        self.session = session
        self.sim = sim
        self.base = sim.base_url
        self.receiver = receiver
        self.token: str | None = None

    async def oauth(self, key: str = "key", secret: str = "secret", **params: str) -> aiohttp.ClientResponse:
        auth = base64.b64encode(f"{key}:{secret}".encode()).decode()
        query = {"grant_type": "client_credentials", **params}
        async with self.session.get(
            f"{self.base}/oauth/v1/generate", params=query, headers={"Authorization": f"Basic {auth}"}
        ) as resp:
            await resp.read()
            return resp

    async def login(self) -> str:
        resp = await self.oauth()
        self.token = (await resp.json())["access_token"]
        return self.token

    async def post(self, path: str, body: Any, token: str | None = None) -> tuple[int, Any]:
        if self.token is None and token is None:
            await self.login()
        headers = {"Authorization": f"Bearer {token or self.token}"}
        async with self.session.post(f"{self.base}{path}", json=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    def stk_body(self, **overrides: Any) -> dict[str, Any]:
        ts = STK_TIMESTAMP
        password = base64.b64encode(f"{SANDBOX_SHORTCODE}{SANDBOX_PASSKEY}{ts}".encode()).decode()
        body: dict[str, Any] = {
            "BusinessShortCode": 174379,
            "Password": password,
            "Timestamp": ts,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": 10,
            "PartyA": PHONE,
            "PartyB": "174379",
            "PhoneNumber": PHONE,
            "CallBackURL": self.receiver.url("stk") if self.receiver else "http://127.0.0.1:9/stk",
            "AccountReference": "PP123",
            "TransactionDesc": "Deposit",
        }
        body.update(overrides)
        if "PhoneNumber" in overrides and "PartyA" not in overrides:
            body["PartyA"] = overrides["PhoneNumber"]
        return {k: v for k, v in body.items() if v is not None}

    async def stk(self, **overrides: Any) -> tuple[int, Any]:
        return await self.post("/mpesa/stkpush/v1/processrequest", self.stk_body(**overrides))

    async def stk_query(self, checkout_request_id: str, **overrides: Any) -> tuple[int, Any]:
        body = self.stk_body()
        query = {k: body[k] for k in ("BusinessShortCode", "Password", "Timestamp")}
        query["CheckoutRequestID"] = checkout_request_id
        query.update(overrides)
        return await self.post("/mpesa/stkpushquery/v1/query", query)

    def b2c_body(self, ocid: str, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "OriginatorConversationID": ocid,
            "InitiatorName": "testapi",
            "SecurityCredential": self.sim.security_credential(),
            "CommandID": "BusinessPayment",
            "Amount": 100,
            "PartyA": "600992",
            "PartyB": "254705912645",
            "Remarks": "withdrawal",
            "QueueTimeOutURL": self.receiver.url("b2c-timeout") if self.receiver else "http://127.0.0.1:9/t",
            "ResultURL": self.receiver.url("b2c-result") if self.receiver else "http://127.0.0.1:9/r",
            "Occassion": "PenPay",
        }
        body.update(overrides)
        return {k: v for k, v in body.items() if v is not None}

    async def b2c(self, ocid: str, **overrides: Any) -> tuple[int, Any]:
        return await self.post("/mpesa/b2c/v3/paymentrequest", self.b2c_body(ocid, **overrides))

    async def status(self, **fields: Any) -> tuple[int, Any]:
        body: dict[str, Any] = {
            "Initiator": "testapi",
            "SecurityCredential": self.sim.security_credential(),
            "CommandID": "TransactionStatusQuery",
            "PartyA": "600992",
            "IdentifierType": "4",
            "ResultURL": self.receiver.url("status-result") if self.receiver else "http://127.0.0.1:9/r",
            "QueueTimeOutURL": self.receiver.url("status-timeout")
            if self.receiver
            else "http://127.0.0.1:9/t",
            "Remarks": "OK",
            "Occasion": "OK",
        }
        body.update(fields)
        return await self.post(
            "/mpesa/transactionstatus/v1/query", {k: v for k, v in body.items() if v is not None}
        )

    async def balance(self, **fields: Any) -> tuple[int, Any]:
        body: dict[str, Any] = {
            "Initiator": "testapi",
            "SecurityCredential": self.sim.security_credential(),
            "CommandID": "AccountBalance",
            "PartyA": "600992",
            "IdentifierType": "4",
            "Remarks": "ok",
            "QueueTimeOutURL": self.receiver.url("balance-timeout")
            if self.receiver
            else "http://127.0.0.1:9/t",
            "ResultURL": self.receiver.url("balance-result") if self.receiver else "http://127.0.0.1:9/r",
        }
        body.update(fields)
        return await self.post(
            "/mpesa/accountbalance/v1/query", {k: v for k, v in body.items() if v is not None}
        )

    async def control(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, f"{self.base}/__control__{path}", json=body) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()


@pytest.fixture
async def daraja(sim: DarajaSimulator, receiver: Receiver) -> AsyncIterator[Daraja]:
    async with aiohttp.ClientSession() as session:
        yield Daraja(session, sim, receiver)


def items(callback: dict[str, Any]) -> dict[str, Any]:
    """CallbackMetadata items by Name (a Name without Value maps to None)."""
    meta = callback["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
    return {i["Name"]: i.get("Value") for i in meta}


def params(result: dict[str, Any]) -> dict[str, Any]:
    return {p["Key"]: p.get("Value") for p in result["Result"]["ResultParameters"]["ResultParameter"]}
