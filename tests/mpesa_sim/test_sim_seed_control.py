from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding

from mpesa_adapter.simulator import DarajaSimulator
from mpesa_adapter.simulator.clock import EAT
from penpay.cli import build_parser
from penpay.commands.sim_mpesa import build_config

from .conftest import Daraja, Receiver, fast_config, items

pytestmark = pytest.mark.integration

FIXED = datetime(2026, 11, 5, 10, 30, 0, tzinfo=EAT)


async def _session(seed: int, receiver: Receiver) -> dict[str, Any]:
    config = fast_config(seed=seed, clock=lambda: FIXED, stk_outcomes={"0": 0.5, "1032": 0.3, "1037": 0.2})
    receiver.items.clear()
    async with DarajaSimulator(config) as sim, aiohttp.ClientSession() as session:
        daraja = Daraja(session, sim, receiver)
        token = await daraja.login()
        pushes = []
        for i in range(8):
            _, push = await daraja.stk(PhoneNumber=f"2547220001{i:02d}", Amount=10 + i)
            pushes.append(push)
        _, payout = await daraja.b2c("wd-seed")
        await sim.drain()
        callbacks = sorted(receiver.at("stk"), key=lambda c: c["Body"]["stkCallback"]["CheckoutRequestID"])
        return {
            "token": token,
            "pushes": pushes,
            "payout": payout,
            "outcomes": [c["Body"]["stkCallback"]["ResultCode"] for c in callbacks],
            "receipts": [
                items(c)["MpesaReceiptNumber"]
                for c in callbacks
                if "CallbackMetadata" in c["Body"]["stkCallback"]
            ],
            "b2c": receiver.at("b2c-result")[0]["Result"]["TransactionID"],
        }


async def test_same_seed_same_ids_receipts_and_outcome_schedule(receiver: Receiver) -> None:
    a, b, c = await _session(7, receiver), await _session(7, receiver), await _session(8, receiver)
    assert a == b
    assert len(set(a["outcomes"])) > 1  # the weighted schedule actually mixes outcomes
    assert a["pushes"] != c["pushes"] and a["receipts"] != c["receipts"]
    assert all(r.startswith("UK5") for r in a["receipts"])  # 2026 = U, November = K, day 5


async def test_certificate_is_deterministic_and_matches_the_checker(daraja: Daraja) -> None:
    status, pem = await daraja.control("GET", "/certificate")
    assert status == 200 and pem.startswith("-----BEGIN CERTIFICATE-----")
    assert pem == daraja.sim.certificate_pem()
    async with DarajaSimulator(fast_config(seed=99)) as other:
        assert other.certificate_pem() == pem  # independent of the run seed
    cert = x509.load_pem_x509_certificate(pem.encode())
    public = cert.public_key()
    assert public.key_size == 2048  # type: ignore[union-attr]
    credential = base64.b64encode(public.encrypt(b"Safaricom999!*!", padding.PKCS1v15())).decode()  # type: ignore[union-attr]
    assert len(credential) == 344
    assert daraja.sim.engine.credentials.matches(credential, "Safaricom999!*!")
    status, body = await daraja.control("POST", "/security-credential", {})
    assert daraja.sim.engine.credentials.decrypt(body["SecurityCredential"]) == "Safaricom999!*!"


async def test_reset_and_books_endpoints(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.stk(Amount=12)
    await daraja.b2c("wd-r", Amount=20)
    await daraja.sim.drain()
    _, phone = await daraja.control("GET", "/books/phone/254705912645")
    assert phone["paid"] == 20 and phone["charged"] == 0
    status, _ = await daraja.control("GET", "/books/b2c/nope")
    assert status == 404
    _, health = await daraja.control("GET", "/health")
    assert health["status"] == "ok" and health["pending_tasks"] == 0
    _, log = await daraja.control("GET", "/callbacks?kind=b2c_result")
    assert len(log) == 1 and log[0]["status"] == 200
    status, body = await daraja.control("POST", "/reset", {"seed": 5})
    assert status == 200 and body["seed"] == 5
    _, books = await daraja.control("GET", "/books")
    assert books["stk"]["transactions"] == [] and books["b2c"]["total_paid"] == 0
    assert books["accounts"]["utility"] == books["accounts"]["opening_utility"]
    status, _ = await daraja.b2c("wd-r")  # forgotten, so no longer a duplicate
    assert status == 200  # and the token survived the reset
    status, _ = await daraja.control("PATCH", "/config", {"port": 1})
    assert status == 400


async def test_drain_endpoint(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.stk()
    status, body = await daraja.control("POST", "/drain", {"timeout": 5})
    assert status == 200 and body == {"drained": True}
    assert len(receiver.at("stk")) == 1


async def test_stop_cancels_outstanding_callbacks(receiver: Receiver) -> None:
    sim = DarajaSimulator(fast_config(callback_delay=30))
    await sim.start()
    async with aiohttp.ClientSession() as session:
        daraja = Daraja(session, sim, receiver)
        status, _ = await daraja.stk()
        assert status == 200
    assert sim.engine.dispatcher.pending == 1
    await sim.stop()
    assert sim.engine.dispatcher.pending == 0
    assert receiver.items == []


def test_cli_registration_and_config() -> None:
    args = build_parser().parse_args(
        [
            "sim",
            "mpesa",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--seed",
            "3",
            "--stk-outcomes",
            "0=0.9,1032=0.1",
        ]
    )
    assert args.handler.__module__ == "penpay.commands.sim_mpesa"
    config = build_config(args)
    assert (config.port, config.seed, config.stk_outcomes) == (0, 3, {"0": 0.9, "1032": 0.1})
