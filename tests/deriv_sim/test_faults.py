"""Every fault kind, targeting, request timeouts and seeded reproducibility."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed

from deriv_gateway.simulator import DerivSimulator
from deriv_gateway.simulator.faults import FaultInjector
from tests.deriv_sim.helpers import ConnectClient, Control, MakeSim

from .helpers import AGENT_TOKEN, ALICE

pytestmark = pytest.mark.integration


def transfer(ref: str, amount: int = 10) -> dict[str, Any]:
    return {
        "paymentagent_transfer": 1,
        "amount": amount,
        "currency": "USD",
        "transfer_to": ALICE,
        "description": f"PenPay ref {ref}",
    }


async def executed(control: Control, ref: str) -> int:
    return int((await control.get("/books/transfers", description_contains=ref))["count"])


async def test_drop_before_does_not_execute(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control
) -> None:
    await control.post("/faults", {"kind": "drop_before", "call": "paymentagent_transfer"})
    agent = await connect_client(sim, AGENT_TOKEN)
    await agent.send(transfer("R1"))
    with pytest.raises(ConnectionClosed) as info:
        await agent.recv(timeout=2)
    assert info.value.rcvd is None  # no close frame: the TCP connection just went away
    assert await executed(control, "R1") == 0


async def test_drop_after_executes_without_reply(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control
) -> None:
    await control.post(
        "/faults", {"kind": "drop_after", "call": "paymentagent_transfer", "match": {"description": "R2"}}
    )
    agent = await connect_client(sim, AGENT_TOKEN)
    assert (await agent.call(transfer("R0")))["paymentagent_transfer"] == 1  # no match: untouched
    await agent.send(transfer("R2"))
    with pytest.raises(ConnectionClosed):
        await agent.recv(timeout=2)
    assert await executed(control, "R2") == 1


async def test_delay_and_delay_past_timeout(
    make_sim: MakeSim, connect_client: ConnectClient, http: aiohttp.ClientSession
) -> None:
    from .helpers import control_for

    sim = await make_sim(request_timeout=0.6)
    control = control_for(sim, http)
    await control.post("/faults", {"kind": "delay", "call": "ping", "delay": 0.3, "nth": 1})
    await control.post("/faults", {"kind": "delay", "call": "paymentagent_transfer", "delay": 5})
    client = await connect_client(sim, AGENT_TOKEN)
    start = time.monotonic()
    assert (await client.call({"ping": 1}))["ping"] == "pong"
    assert time.monotonic() - start >= 0.29
    start = time.monotonic()
    assert (await client.call({"ping": 1}))["ping"] == "pong"  # nth=1: only the first
    assert time.monotonic() - start < 0.25
    start = time.monotonic()
    reply = await client.call(transfer("R3"))
    elapsed = time.monotonic() - start
    assert reply["msg_type"] == "error"
    assert reply["error"] == {"code": "Timeout", "message": "Timeout"}
    assert reply["echo_req"]["description"] == "PenPay ref R3"
    assert 0.55 <= elapsed < 2
    assert await executed(control, "R3") == 1  # executed; only the reply was lost


async def test_other_requests_are_answered_while_one_is_delayed(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control
) -> None:
    await control.post("/faults", {"kind": "delay", "call": "balance", "delay": 0.5})
    client = await connect_client(sim, AGENT_TOKEN)
    await client.send({"balance": 1, "req_id": 100})
    assert (await client.call({"ping": 1}))["ping"] == "pong"
    assert (await client.recv(timeout=2))["req_id"] == 100


async def test_rate_limit_fault_does_not_execute(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control
) -> None:
    await control.post("/faults", {"kind": "rate_limit", "call": "paymentagent_transfer", "times": 1})
    agent = await connect_client(sim, AGENT_TOKEN)
    reply = await agent.call(transfer("R4"))
    assert reply["error"] == {
        "code": "RateLimit",
        "message": "You have reached the rate limit for paymentagent_transfer.",
    }
    assert await executed(control, "R4") == 0
    assert (await agent.call(transfer("R4")))["paymentagent_transfer"] == 1  # times=1: the retry passes
    assert await executed(control, "R4") == 1


@pytest.mark.parametrize("execute", [True, False])
async def test_timeout_fault(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control, execute: bool
) -> None:
    await control.post(
        "/faults", {"kind": "timeout", "call": "paymentagent_transfer", "delay": 0.1, "execute": execute}
    )
    agent = await connect_client(sim, AGENT_TOKEN)
    reply = await agent.call(transfer("R5"))
    assert reply["msg_type"] == "error" and reply["error"]["code"] == "Timeout"
    assert await executed(control, "R5") == (1 if execute else 0)


async def test_duplicate_reply_executes_once(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control
) -> None:
    await control.post("/faults", {"kind": "duplicate", "call": "paymentagent_transfer"})
    agent = await connect_client(sim, AGENT_TOKEN)
    first = await agent.call(transfer("R6", amount=12))
    second = await agent.recv(timeout=2)
    assert first == second and first["paymentagent_transfer"] == 1
    assert await executed(control, "R6") == 1


async def test_skip_stream_updates(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control
) -> None:
    agent = await connect_client(sim, AGENT_TOKEN)
    await agent.call({"balance": 1, "subscribe": 1})
    await control.post("/faults", {"kind": "skip_stream", "call": "balance", "nth": 1})
    await agent.call(transfer("R7"))
    assert [m for m in await agent.quiet(0.2) if m["msg_type"] == "balance"] == []
    await agent.call(transfer("R8"))
    update = await agent.stream("balance")
    assert update["balance"]["balance"] == 49980.0  # the second update arrives, with the true balance
    rules = (await control.get("/faults"))["faults"]
    assert rules[0]["seen"] == 2 and rules[0]["fired"] == 1


async def test_faults_from_config_and_control_crud(
    make_sim: MakeSim, connect_client: ConnectClient, http: aiohttp.ClientSession
) -> None:
    from .helpers import control_for

    sim = await make_sim(faults=[{"id": "first-ping", "kind": "rate_limit", "call": "ping", "nth": 1}])
    control = control_for(sim, http)
    client = await connect_client(sim)
    assert (await client.call({"ping": 1}))["error"]["code"] == "RateLimit"
    assert (await client.call({"ping": 1}))["ping"] == "pong"
    created = await control.post("/faults", {"rules": [{"kind": "duplicate"}, {"kind": "delay", "delay": 1}]})
    ids = [r["id"] for r in created["faults"]]
    assert len(ids) == 2
    await control.delete(f"/faults/{ids[1]}")
    assert [r["id"] for r in (await control.get("/faults"))["faults"]] == ["first-ping", ids[0]]
    bad = await control.post("/faults", {"kind": "explode"}, status=400)
    assert "kind must be one of" in bad["error"]
    await control.delete("/faults")
    assert (await control.get("/faults"))["faults"] == []


def schedule(seed: int, n: int = 200) -> list[bool]:
    injector = FaultInjector(seed, [{"id": "p", "kind": "drop_before", "call": "ping", "probability": 0.3}])
    return [injector.decide("ping", {"ping": 1}, None) is not None for _ in range(n)]


def test_seeded_schedule_is_reproducible() -> None:
    assert schedule(7) == schedule(7)
    assert schedule(7) != schedule(8)
    assert 30 < sum(schedule(7)) < 90
    # a rule's schedule depends on the seed, its id and its own matching traffic, not on other rules
    injector = FaultInjector(
        7,
        [
            {"kind": "delay", "call": "time", "delay": 1, "probability": 0.5},
            {"id": "p", "kind": "drop_before", "call": "ping", "probability": 0.3},
        ],
    )
    mixed = []
    for _ in range(200):
        injector.decide("time", {"time": 1}, None)
        mixed.append(injector.decide("ping", {"ping": 1}, None) is not None)
    assert mixed == schedule(7)


async def test_seeded_schedule_over_the_wire(make_sim: MakeSim, connect_client: ConnectClient) -> None:
    async def run(seed: int) -> list[str]:
        sim = await make_sim(seed=seed, faults=[{"kind": "rate_limit", "call": "ping", "probability": 0.5}])
        client = await connect_client(sim)
        out = []
        for _ in range(30):
            reply = await client.call({"ping": 1})
            out.append(reply.get("error", {}).get("code", "ok"))
        return out

    a, b, c = await run(11), await run(11), await run(12)
    assert a == b and a != c
    assert "RateLimit" in a and "ok" in a


async def test_reset_restores_seed_state(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control
) -> None:
    agent = await connect_client(sim, AGENT_TOKEN)
    await control.post("/faults", {"kind": "duplicate", "call": "ping"})
    await agent.call(transfer("R9"))
    await control.post("/reset")
    assert (await control.get("/books/transfers"))["count"] == 0
    assert (await control.get("/faults"))["faults"] == []
    assert (await control.get(f"/accounts/{ALICE}"))["balance"] == "1000.00"
    # the session lost its login with the reset
    assert (await agent.call({"balance": 1}))["error"]["code"] == "AuthorizationRequired"
    await asyncio.sleep(0)


async def test_same_seed_same_transcript(
    make_sim: MakeSim, connect_client: ConnectClient, http: aiohttp.ClientSession
) -> None:
    from .helpers import ALICE_EMAIL, ALICE_TOKEN, control_for

    async def run(seed: int) -> tuple[str, str, str]:
        sim = await make_sim(seed=seed)
        control = control_for(sim, http)
        agent = await connect_client(sim, AGENT_TOKEN)
        sub = (await agent.call({"balance": 1, "subscribe": 1}))["subscription"]["id"]
        await agent.call(transfer("S1"))
        alice = await connect_client(sim, ALICE_TOKEN)
        await alice.call({"verify_email": ALICE_EMAIL, "type": "paymentagent_withdraw"})
        reference = (await control.get("/books/transfers"))["transfers"][0]["reference"]
        return sub, reference, await control.code(ALICE)

    assert await run(21) == await run(21)
    assert await run(21) != await run(22)
