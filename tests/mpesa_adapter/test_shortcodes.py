"""The merchant's accounts as the settings name them, on the wire (daraja-protocol.md): the STK
paybill or till, the B2C shortcode of B2C / Transaction Status / Account Balance and its initiator.

The client is built from `penpay.settings.Settings` through the composition root
(`bootstrap.daraja_config`), and talks to the simulator through a recording proxy over real
sockets, so each test reads the JSON that left PenPay and what the simulated Daraja made of it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from mpesa_adapter.client import DarajaClient
from mpesa_adapter.simulator.config import DEFAULT_INITIATOR_PASSWORD, SANDBOX_PASSKEY, SANDBOX_SHORTCODE
from penpay.bootstrap import daraja_config
from penpay.settings import Settings
from tests.mpesa_adapter.conftest import CONSUMER_KEY, CONSUMER_SECRET, Harness, phone

pytestmark = pytest.mark.integration

B2C_SHORTCODE = "600000"  # not the simulator's default (600992): only the settings can name it
STORE = "174379"
TILL = "5566778"
SIM = {
    "b2c_shortcodes": [B2C_SHORTCODE],
    "initiator_name": "penpay-ops",
    "tills": {STORE: [TILL]},
}


class RecordingProxy:
    """Forwards every request to the simulator and keeps the JSON bodies PenPay sent, by path."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if body:
            self.sent.append((request.path, json.loads(body)))
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        async with (
            aiohttp.ClientSession() as session,
            session.request(request.method, self.upstream + request.path_qs, data=body, headers=headers) as r,
        ):
            return web.Response(body=await r.read(), status=r.status, content_type=r.content_type)

    def bodies(self, path_end: str) -> list[dict[str, Any]]:
        return [body for path, body in self.sent if path.endswith(path_end)]

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


Wired = tuple[DarajaClient, RecordingProxy]


@pytest.fixture
async def wire(h: Harness, tmp_path: Path) -> AsyncIterator[Any]:
    """wire(**settings) -> (a client built from Settings, its recording proxy to the harness's simulator)."""
    assert h.sim.base_url is not None
    cert = tmp_path / "daraja-sim-cert.pem"
    cert.write_text(h.sim.certificate_pem())
    made: list[Wired] = []

    async def make(**settings: Any) -> Wired:
        proxy = RecordingProxy(str(h.sim.base_url))
        values: dict[str, Any] = {
            "app_env": "testing",
            "mpesa_base_url": await proxy.start(),
            "mpesa_consumer_key": CONSUMER_KEY,
            "mpesa_consumer_secret": CONSUMER_SECRET,
            "mpesa_shortcode": SANDBOX_SHORTCODE,
            "mpesa_passkey": SANDBOX_PASSKEY,
            "mpesa_b2c_shortcode": B2C_SHORTCODE,
            "mpesa_initiator_name": "penpay-ops",
            "mpesa_initiator_password": DEFAULT_INITIATOR_PASSWORD,
            "mpesa_cert_file": str(cert),
            "mpesa_callback_base_url": h.daraja_config.callback_base_url,
            "mpesa_callback_secret": h.daraja_config.callback_secret,
        }
        client = DarajaClient(daraja_config(Settings(**(values | settings))))
        made.append((client, proxy))
        return client, proxy

    yield make
    for client, proxy in made:
        await client.close()
        await proxy.stop()


@pytest.mark.harness(sim_overrides=SIM)
async def test_b2c_status_and_balance_go_from_the_b2c_shortcode_and_it_pays(h: Harness, wire: Any) -> None:
    client, proxy = await wire()
    msisdn = phone()
    _, ocid = await h.payout(msisdn, 300, client=client)
    await client.transaction_status(originator_conversation_id=ocid)
    await client.account_balance()
    await h.drain()

    [b2c] = proxy.bodies("/mpesa/b2c/v3/paymentrequest")
    [status] = proxy.bodies("/mpesa/transactionstatus/v1/query")
    [balance] = proxy.bodies("/mpesa/accountbalance/v1/query")
    assert (b2c["PartyA"], b2c["InitiatorName"], b2c["PartyB"]) == (B2C_SHORTCODE, "penpay-ops", msisdn)
    for report in (status, balance):
        sent = (report["PartyA"], report["Initiator"], report["IdentifierType"])
        assert sent == (B2C_SHORTCODE, "penpay-ops", "4")
    assert all(body["SecurityCredential"] for body in (b2c, status, balance))

    record = h.sim.engine.books.b2c[ocid]
    assert (record.party_a, record.paid, record.result_code) == (B2C_SHORTCODE, True, 0)
    results = [c["body"]["Result"]["ResultCode"] for c in h.sim.callbacks if c["kind"] != "b2c_result"]
    assert sorted(map(str, results)) == ["0", "0"]  # status and balance answered for our account


@pytest.mark.harness(sim_overrides=SIM)
async def test_a_shortcode_daraja_does_not_know_as_ours_pays_nothing(h: Harness, wire: Any) -> None:
    """A B2C shortcode the organisation does not hold: Daraja's ResultCode 21 (the initiator may not
    act for that PartyA), nothing paid; status and balance are refused the same way."""
    client, _ = await wire(mpesa_b2c_shortcode="600111")
    _, ocid = await h.payout(phone(), 300, client=client)
    await client.account_balance()
    await h.drain()
    record = h.sim.engine.books.b2c[ocid]
    assert (record.party_a, record.paid, record.result_code) == ("600111", False, 21)
    [balance] = [c["body"]["Result"] for c in h.sim.callbacks if c["kind"] == "balance_result"]
    assert str(balance["ResultCode"]) == "21"


@pytest.mark.harness(sim_overrides=SIM)
async def test_a_paybill_is_both_business_shortcode_and_party_b(h: Harness, wire: Any) -> None:
    client, proxy = await wire()
    accepted = await client.stk_push(phone=phone(), amount_cents=100_00, account_reference="PENPAY1")
    await client.stk_query(accepted.checkout_request_id)
    [push] = proxy.bodies("/mpesa/stkpush/v1/processrequest")
    [query] = proxy.bodies("/mpesa/stkpushquery/v1/query")
    assert (push["TransactionType"], str(push["BusinessShortCode"]), str(push["PartyB"])) == (
        "CustomerPayBillOnline",
        SANDBOX_SHORTCODE,
        SANDBOX_SHORTCODE,
    )
    assert str(query["BusinessShortCode"]) == SANDBOX_SHORTCODE


@pytest.mark.harness(sim_overrides=SIM)
async def test_a_till_sends_buy_goods_with_the_store_as_business_shortcode_and_the_till_as_party_b(
    h: Harness, wire: Any
) -> None:
    client, proxy = await wire(
        mpesa_shortcode=STORE, mpesa_transaction_type="CustomerBuyGoodsOnline", mpesa_till_number=TILL
    )
    msisdn = phone()
    accepted = await client.stk_push(phone=msisdn, amount_cents=100_00, account_reference="PENPAY1")
    await h.drain()
    [push] = proxy.bodies("/mpesa/stkpush/v1/processrequest")
    assert (push["TransactionType"], str(push["BusinessShortCode"]), str(push["PartyB"])) == (
        "CustomerBuyGoodsOnline",
        STORE,
        TILL,
    )
    record = h.sim.engine.books.stk[accepted.checkout_request_id]
    assert (record.transaction_type, record.party_b, record.charged) == ("CustomerBuyGoodsOnline", TILL, True)
