from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from mpesa_adapter.simulator import DarajaSimulator

from .conftest import Daraja, Receiver, fast_config

pytestmark = pytest.mark.integration


def crid(callback: dict[str, Any]) -> str:
    return str(callback["Body"]["stkCallback"]["CheckoutRequestID"])


async def test_duplicate_callbacks(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.control("POST", "/faults", {"kind": "duplicate", "api": "stk", "copies": 3})
    _, push = await daraja.stk()
    callbacks = await receiver.wait("stk", 3)
    assert [crid(c) for c in callbacks] == [push["CheckoutRequestID"]] * 3
    assert callbacks[0] == callbacks[1] == callbacks[2]
    await daraja.sim.drain()
    assert daraja.sim.books["stk"]["total_charged"] == 10  # charged once


async def test_late_callback(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.control("POST", "/faults", {"kind": "late", "api": "stk"})
    start = time.monotonic()
    _, push = await daraja.stk()
    await asyncio.sleep(0.15)
    _, final = await daraja.stk_query(push["CheckoutRequestID"])
    assert final["ResultCode"] == "0"  # completed already; only the callback is late
    assert receiver.at("stk") == []
    await receiver.wait("stk")
    assert time.monotonic() - start >= 0.3


async def test_callback_that_never_comes(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.control("POST", "/faults", {"kind": "drop", "api": "stk"})
    _, push = await daraja.stk(Amount=60)
    await daraja.sim.drain()
    assert receiver.at("stk") == []
    assert daraja.sim.books["stk"]["total_charged"] == 60  # the customer paid anyway
    _, log = await daraja.control("GET", f"/callbacks?ref={push['CheckoutRequestID']}")
    assert log[0]["notes"][-1] == "dropped: never delivered" and log[0]["status"] is None


async def test_callbacks_out_of_order(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.control("POST", "/faults", {"kind": "out_of_order", "api": "stk"})
    _, first = await daraja.stk(PhoneNumber="254711000001")
    await asyncio.sleep(0.1)  # first completed and is being held
    _, second = await daraja.stk(PhoneNumber="254711000002")
    callbacks = await receiver.wait("stk", 2)
    assert [crid(c) for c in callbacks] == [second["CheckoutRequestID"], first["CheckoutRequestID"]]


async def test_out_of_order_is_released_after_the_hold_limit(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.control("POST", "/faults", {"kind": "out_of_order", "api": "stk"})
    await daraja.stk()
    await receiver.wait("stk", 1, timeout=2)


async def test_spike_arrest_via_control_for_next_request_only(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.control("POST", "/faults", {"kind": "spike_arrest", "api": "stk", "count": 1})
    status, body = await daraja.stk()
    assert (status, body["errorCode"]) == (500, "500.003.02")
    assert "Spike Arrest" in body["errorMessage"]
    assert daraja.sim.books["stk"]["transactions"] == []  # nothing was accepted
    status, _ = await daraja.stk()
    assert status == 200


@pytest.mark.parametrize(("kind", "code"), [("quota", "500.003.03"), ("internal_error", "500.003.1001")])
async def test_other_gateway_faults(daraja: Daraja, kind: str, code: str) -> None:
    await daraja.control("POST", "/faults", {"kind": kind, "api": "b2c"})
    status, body = await daraja.b2c("wd-gw")
    assert (status, body["errorCode"]) == (500, code)
    status, _ = await daraja.b2c("wd-gw")  # the id was not consumed
    assert status == 200


async def test_rate_based_spike_arrest() -> None:
    async with DarajaSimulator(fast_config(spike_arrest_rps=2)) as sim, aiohttp.ClientSession() as session:
        daraja = Daraja(session, sim, None)
        codes = [(await daraja.stk_query("ws_CO_x"))[1]["errorCode"] for _ in range(4)]
    assert codes[:2] == ["500.001.1001", "500.001.1001"] and codes[2:] == ["500.003.02", "500.003.02"]


async def test_callback_for_unknown_checkout_request_id(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.control("POST", "/faults", {"kind": "unknown_callback", "api": "stk"})
    _, push = await daraja.stk()
    callbacks = await receiver.wait("stk", 2)
    ids = {crid(c) for c in callbacks}
    assert push["CheckoutRequestID"] in ids
    [unknown] = ids - {push["CheckoutRequestID"]}
    assert unknown not in daraja.sim.engine.books.stk
    await daraja.sim.drain()
    assert daraja.sim.books["stk"]["total_charged"] == 10  # the spoof moved no money


async def test_unknown_callback_on_demand(daraja: Daraja, receiver: Receiver) -> None:
    status, body = await daraja.control(
        "POST", "/stk/unknown-callback", {"url": receiver.url("stk"), "result_code": 0, "amount": 999}
    )
    assert status == 202
    [callback] = await receiver.wait("stk")
    assert crid(callback) == body["CheckoutRequestID"]
    assert daraja.sim.books["stk"]["transactions"] == []


async def test_callback_delay_fault_and_config(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.control("POST", "/faults", {"kind": "delay", "api": "stk", "seconds": 0.4})
    start = time.monotonic()
    await daraja.stk()
    await receiver.wait("stk")
    assert time.monotonic() - start >= 0.4
    status, body = await daraja.control("PATCH", "/config", {"callback_delay": 0.25})
    assert status == 200 and body["changed"] == ["callback_delay"]
    start = time.monotonic()
    await daraja.stk()
    await receiver.wait("stk", 2)
    assert time.monotonic() - start >= 0.25


async def test_b2c_result_faults_duplicate_and_drop(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.control("POST", "/faults", {"kind": "duplicate", "api": "b2c"})
    await daraja.b2c("wd-d")
    results = await receiver.wait("b2c-result", 2)
    assert results[0] == results[1]
    await daraja.control("POST", "/faults", {"kind": "drop", "api": "b2c"})
    await daraja.b2c("wd-x")
    await daraja.sim.drain()
    assert len(receiver.at("b2c-result")) == 2
    assert daraja.sim.books["b2c"]["paid_by_phone"] == {"254705912645": 200}


async def test_faults_chosen_by_phone_number(daraja: Daraja, receiver: Receiver) -> None:
    # 2547000 F OOOO: fault digit 1 = duplicate, outcome 1032 = cancelled
    _, push = await daraja.stk(PhoneNumber="254700011032")
    callbacks = await receiver.wait("stk", 2)
    assert [c["Body"]["stkCallback"]["ResultCode"] for c in callbacks] == [1032, 1032]
    status, body = await daraja.stk(PhoneNumber="254700070000")  # 7 = spike arrest
    assert (status, body["errorCode"]) == (500, "500.003.02")
    await daraja.b2c("wd-lab", PartyB="254700060000")  # 6 = queue timeout
    await receiver.wait("b2c-timeout")
    assert push["CheckoutRequestID"]


async def test_run_wide_probabilistic_faults_are_seeded(receiver: Receiver) -> None:
    async def run() -> list[str]:
        async with DarajaSimulator(fast_config(seed=42)) as sim, aiohttp.ClientSession() as session:
            daraja = Daraja(session, sim, receiver)
            await daraja.control(
                "POST", "/faults", {"kind": "drop", "api": "stk", "count": None, "probability": 0.5}
            )
            for i in range(12):
                await daraja.stk(PhoneNumber=f"2547220000{i:02d}")
            await sim.drain()
            return sorted(e["ref"][-9:] for e in sim.callbacks if e["status"] is None)

    first, second = await run(), await run()
    assert first == second and 0 < len(first) < 12


async def test_fault_rule_validation_and_listing(daraja: Daraja) -> None:
    status, _ = await daraja.control("POST", "/faults", {"kind": "gremlins"})
    assert status == 400
    status, _ = await daraja.control("POST", "/faults", {"kind": "queue_timeout", "api": "stk"})
    assert status == 400
    await daraja.control("POST", "/faults", {"kind": "late", "count": None})
    _, listing = await daraja.control("GET", "/faults")
    assert listing["faults"][0]["kind"] == "late" and listing["faults"][0]["remaining"] is None
    await daraja.control("DELETE", "/faults")
    _, listing = await daraja.control("GET", "/faults")
    assert listing["faults"] == []
