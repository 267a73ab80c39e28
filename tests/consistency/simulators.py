"""Driving the Deriv and M-Pesa simulators (in process, 127.0.0.1:0) as PenPay would, to make
their books match a run booked in the database.

The Deriv side speaks the WebSocket API (paymentagent_transfer as the agent; verify_email and
paymentagent_withdraw as the client, with the mailed code); the M-Pesa side speaks Daraja
over HTTP (OAuth, STK Push, B2C). Descriptions are PenPay's references
(deriv_gateway.protocol.messages.reference), B2C ids mpesa_adapter.client's.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect

from deriv_gateway.protocol.messages import reference, to_wire_amount
from deriv_gateway.simulator import DEFAULT_AGENT_LOGINID, DEFAULT_AGENT_TOKEN, DerivSimulator
from mpesa_adapter.client import originator_conversation_id_for
from mpesa_adapter.simulator import DarajaSimulator
from mpesa_adapter.simulator.config import SANDBOX_B2C_SHORTCODE, SANDBOX_PASSKEY, SANDBOX_SHORTCODE
from persistence.consistency.check import check_consistency
from persistence.consistency.report import ConsistencyReport
from proving.simulator_books import fetch_simulator_books
from tests.consistency.helpers import (
    B2C_FAILING_PHONE,
    BOOKED_AT,
    CANCELLING_PHONE,
    DEPOSIT_KES,
    PHONE,
    ExternalIds,
    World,
    build_world,
    plan,
)

CLIENT_TOKEN = "sim-client1-token"
CLIENT_EMAIL = "alice@clients.sim"
NOWHERE = "http://127.0.0.1:9/callback"  # callbacks are not what these tests look at
# The STK Timestamp (EAT): Daraja checks its form and the Password made with it, not its age.
STK_TIMESTAMP = "20261206150000"


class Deriv:
    def __init__(self, sim: DerivSimulator, http: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.http = http
        self._next = 1
        self._sockets: list[ClientConnection] = []

    async def close(self) -> None:
        for ws in self._sockets:
            await ws.close()

    async def _session(self, token: str) -> ClientConnection:
        ws = await connect(self.sim.url())
        self._sockets.append(ws)
        await self.call(ws, {"authorize": token})
        return ws

    async def call(self, ws: ClientConnection, request: dict[str, Any]) -> dict[str, Any]:
        request = {**request, "req_id": self._next}
        self._next += 1
        await ws.send(json.dumps(request))
        while True:
            reply = json.loads(await ws.recv())
            if reply.get("req_id") == request["req_id"]:
                assert "error" not in reply, reply
                answer: dict[str, Any] = reply
                return answer

    async def control(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        assert self.sim.control_url
        async with self.http.request(
            method, self.sim.control_url + path, json=body, params=params or None
        ) as response:
            assert response.status in (200, 201), await response.text()
            return await response.json()

    async def transfer(
        self, operation_id: str, cents: int, to: str = "CR90000001", description: str | None = None
    ) -> int:
        """paymentagent_transfer as the agent, described with PenPay's reference (or `description`)."""
        ws = await self._session(DEFAULT_AGENT_TOKEN)
        reply = await self.call(
            ws,
            {
                "paymentagent_transfer": 1,
                "amount": to_wire_amount(cents),
                "currency": "USD",
                "transfer_to": to,
                "description": reference(operation_id) if description is None else description,
            },
        )
        return int(reply["transaction_id"])

    async def withdraw(self, operation_id: str, cents: int) -> int:
        """paymentagent_withdraw as the client, with the code Deriv mailed."""
        ws = await self._session(CLIENT_TOKEN)
        await self.call(ws, {"verify_email": CLIENT_EMAIL, "type": "paymentagent_withdraw"})
        code = (await self.control("GET", "/mailbox/CR90000001"))["latest"]
        reply = await self.call(
            ws,
            {
                "paymentagent_withdraw": 1,
                "amount": to_wire_amount(cents),
                "currency": "USD",
                "paymentagent_loginid": DEFAULT_AGENT_LOGINID,
                "verification_code": code,
                "description": reference(operation_id),
            },
        )
        return int(reply["transaction_id"])


class Mpesa:
    def __init__(self, sim: DarajaSimulator, http: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.http = http
        self._token: str | None = None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self._token is None:
            basic = base64.b64encode(b"key:secret").decode()
            async with self.http.get(
                f"{self.sim.base_url}/oauth/v1/generate",
                params={"grant_type": "client_credentials"},
                headers={"Authorization": f"Basic {basic}"},
            ) as response:
                self._token = (await response.json())["access_token"]
        async with self.http.post(
            f"{self.sim.base_url}{path}", json=body, headers={"Authorization": f"Bearer {self._token}"}
        ) as response:
            reply = await response.json(content_type=None)
            assert response.status == 200, reply
            return dict(reply)

    async def stk(self, phone: str, shillings: int) -> str:
        """An STK push, completed (charged or declined by the phone's rule); its CheckoutRequestID."""
        timestamp = STK_TIMESTAMP
        password = base64.b64encode(f"{SANDBOX_SHORTCODE}{SANDBOX_PASSKEY}{timestamp}".encode()).decode()
        reply = await self._post(
            "/mpesa/stkpush/v1/processrequest",
            {
                "BusinessShortCode": int(SANDBOX_SHORTCODE),
                "Password": password,
                "Timestamp": timestamp,
                "TransactionType": "CustomerPayBillOnline",
                "Amount": shillings,
                "PartyA": phone,
                "PartyB": SANDBOX_SHORTCODE,
                "PhoneNumber": phone,
                "CallBackURL": NOWHERE,
                "AccountReference": "PenPay",
                "TransactionDesc": "Deposit",
            },
        )
        await self.sim.drain()
        return str(reply["CheckoutRequestID"])

    async def paybill(self, phone: str, shillings: int) -> str:
        """The phone pays the paybill (validation skipped, the URLs registered first); its TransID."""
        await self._post(
            "/mpesa/c2b/v2/registerurl",
            {
                "ShortCode": SANDBOX_SHORTCODE,
                "ResponseType": "Completed",
                "ConfirmationURL": NOWHERE,
                "ValidationURL": NOWHERE,
            },
        )
        async with self.http.post(
            f"{self.sim.base_url}/__control__/c2b/pay",
            json={"phone": phone, "amount": shillings, "account": "NOBODY", "validation": False},
        ) as response:
            paid = await response.json()
            assert response.status == 201 and paid["status"] == "completed", paid
        await self.sim.drain()
        return str(paid["TransID"])

    def receipt(self, checkout_request_id: str) -> str:
        record = self.sim.engine.books.stk[checkout_request_id]
        assert record.charged and record.receipt
        return record.receipt

    async def b2c(self, originator_conversation_id: str, phone: str, shillings: int) -> str | None:
        """A B2C payment, completed; its receipt when paid."""
        await self._post(
            "/mpesa/b2c/v3/paymentrequest",
            {
                "OriginatorConversationID": originator_conversation_id,
                "InitiatorName": "testapi",
                "SecurityCredential": self.sim.security_credential(),
                "CommandID": "BusinessPayment",
                "Amount": shillings,
                "PartyA": SANDBOX_B2C_SHORTCODE,
                "PartyB": phone,
                "Remarks": "withdrawal",
                "QueueTimeOutURL": NOWHERE,
                "ResultURL": NOWHERE,
                "Occassion": "PenPay",
            },
        )
        await self.sim.drain()
        record = self.sim.engine.books.b2c[originator_conversation_id]
        return record.receipt


class Run:
    def __init__(self, world: World, deriv: Deriv, mpesa: Mpesa, now: datetime) -> None:
        self.world = world
        self.now = now  # when the run was booked: the check is made as of then
        self.deriv = deriv
        self.mpesa = mpesa

    async def check(self, **fetch: object) -> ConsistencyReport:
        books = await fetch_simulator_books(
            deriv_control_url=self.deriv.sim.control_url,
            mpesa_control_url=self.mpesa.sim.base_url,
            **fetch,  # type: ignore[arg-type]
        )
        return await check_consistency(
            self.world.engine, now=self.now, stale_after=timedelta(minutes=15), books=books
        )


async def run_with_books(
    engine: AsyncEngine,
    url: str,
    deriv: Deriv,
    mpesa: Mpesa,
    *,
    skip: frozenset[str] = frozenset(),
    now: datetime = BOOKED_AT,
) -> Run:
    """The helpers' world, its external calls made on the simulators (except those in `skip`),
    booked as of `now`."""
    p = await plan(engine, now=now)
    ids = ExternalIds()

    ids.deposit_checkout = await mpesa.stk(PHONE, DEPOSIT_KES)
    ids.deposit_receipt = mpesa.receipt(ids.deposit_checkout)
    if "deposit transfer" not in skip:
        ids.deposit_deriv_id = await deriv.transfer(str(p.deposit.id), cents(p.deposit.converted_amount))

    w = p.withdrawal
    if "withdrawal debit" not in skip:
        ids.withdrawal_deriv_id = await deriv.withdraw(str(w.id), w.amount.amount_minor)
    ids.withdrawal_ocid = originator_conversation_id_for(w.id.value)
    if "withdrawal payout" not in skip:
        receipt = await mpesa.b2c(ids.withdrawal_ocid, PHONE, cents(w.converted_amount) // 100)
        assert receipt is not None
        ids.withdrawal_receipt = receipt

    r = p.reversed_withdrawal
    ids.reversed_deriv_id = await deriv.withdraw(str(r.id), r.amount.amount_minor)
    ids.reversed_ocid = originator_conversation_id_for(r.id.value)
    assert await mpesa.b2c(ids.reversed_ocid, B2C_FAILING_PHONE, cents(r.converted_amount) // 100) is None
    if "refund" not in skip:
        await deriv.transfer(f"{r.id}-refund", r.amount.amount_minor)

    ids.failed_checkout = await mpesa.stk(CANCELLING_PHONE, p.failed_deposit.amount.amount_minor // 100)
    ids.review_checkout = await mpesa.stk(PHONE, p.review_deposit.amount.amount_minor // 100)
    ids.review_receipt = mpesa.receipt(ids.review_checkout)
    # the pending deposit's STK push is not made: nothing of it is in the books yet

    world = await build_world(engine, url, p, ids, now=now)
    return Run(world, deriv, mpesa, now)


def cents(money: object) -> int:
    assert money is not None
    return int(money.amount_minor)  # type: ignore[attr-defined]
