"""Connection, envelope and Deriv's pre-dispatch check order."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from deriv_gateway.simulator import DerivSimulator, RateLimitConfig
from deriv_gateway.simulator.ratelimit import SlidingWindows
from tests.deriv_sim.helpers import Client, ConnectClient, MakeSim

from .helpers import AGENT_TOKEN, ALICE_TOKEN

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "query", ["", "?app_id=", "?app_id=0123", "?app_id=abc", "?l=EN", "?app_id=12345678901234567890"]
)
async def test_upgrade_refused_without_valid_app_id(sim: DerivSimulator, query: str) -> None:
    url = sim.url(app_id=None) + query
    with pytest.raises(InvalidStatus) as info:
        await connect(url)
    response = info.value.response
    assert response.status_code == 401
    assert json.loads(response.body) == {"error": "InvalidAppID"}
    assert response.headers["Content-Type"] == "application/json"


async def test_unknown_path_is_404(sim: DerivSimulator) -> None:
    assert sim.ports is not None
    with pytest.raises(InvalidStatus) as info:
        await connect(f"ws://127.0.0.1:{sim.ports.ws}/other?app_id=1089")
    assert info.value.response.status_code == 404


async def test_ping_time_and_envelope(client: Client, sim: DerivSimulator) -> None:
    pong = await client.call({"ping": 1, "req_id": 7, "passthrough": {"trace": "x1"}})
    assert pong == {
        "echo_req": {"ping": 1, "req_id": 7, "passthrough": {"trace": "x1"}},
        "msg_type": "ping",
        "ping": "pong",
        "req_id": 7,
        "passthrough": {"trace": "x1"},
    }
    await client.send({"time": 1})  # no req_id: none in the reply
    reply = await client.recv()
    assert "req_id" not in reply and reply["msg_type"] == "time"
    assert abs(reply["time"] - sim.engine.clock.epoch()) <= 2


async def test_echo_req_redacts_sensitive_fields(client: Client) -> None:
    reply = await client.call({"authorize": AGENT_TOKEN, "tokens": ["sim-agent-read"]})
    assert reply["echo_req"]["authorize"] == "<not shown>"
    assert reply["echo_req"]["tokens"] == "<not shown>"
    bad = await client.call({"authorize": "no-such-token"})
    assert bad["error"] == {"code": "InvalidToken", "message": "The token is invalid."}
    assert bad["echo_req"]["authorize"] == "<not shown>"
    # InputValidationFailed echoes the raw request
    invalid = await client.call({"authorize": "bad token!"})
    assert invalid["error"]["code"] == "InputValidationFailed"
    assert invalid["echo_req"]["authorize"] == "bad token!"


async def test_malformed_json_closes_the_socket(client: Client) -> None:
    await client.send("{not json")
    with pytest.raises(ConnectionClosed):
        await client.recv(timeout=2)


async def test_non_object_is_bad_request_and_unknown_call_unrecognised(client: Client) -> None:
    await client.send("[1, 2]")
    reply = await client.recv()
    assert reply["msg_type"] == "error" and reply["error"]["code"] == "BadRequest"
    reply = await client.call({"ticks_history_x": 1})
    assert reply["msg_type"] == "error"
    assert reply["error"] == {"code": "UnrecognisedRequest", "message": "Unrecognised request"}


async def test_input_validation_details(client: Client) -> None:
    reply = await client.call({"paymentagent_transfer": 1, "amount": "10", "currency": "US$"})
    error = reply["error"]
    assert error["code"] == "InputValidationFailed"
    assert error["message"] == "Input validation failed: amount, currency, transfer_to"
    assert error["details"] == {
        "amount": "Expected number - got string.",
        "currency": "String does not match ^[a-zA-Z0-9]{2,20}$.",
        "transfer_to": "Missing property.",
    }
    extra = await client.call({"ping": 1, "foo": 2})
    assert extra["error"] == {
        "code": "InputValidationFailed",
        "message": "Input validation failed: Properties not allowed: foo.",
    }
    enum = await client.call({"balance": 2})
    assert enum["error"]["details"] == {"balance": "Not in enum list: 1."}
    await client.send({"ping": 1, "req_id": "x"})
    reply = await client.recv()
    assert "req_id" not in reply  # only an integer req_id is copied
    assert reply["error"]["details"] == {"req_id": "Expected integer - got string."}


async def test_check_order_validation_before_auth_before_scope(
    connect_client: ConnectClient, sim: DerivSimulator
) -> None:
    anon = await connect_client(sim)
    # unauthenticated AND invalid: InputValidationFailed wins
    reply = await anon.call({"balance": 1, "subscribe": 5})
    assert reply["error"]["code"] == "InputValidationFailed"
    reply = await anon.call({"balance": 1})
    assert reply["error"] == {"code": "AuthorizationRequired", "message": "Please log in."}
    reader = await connect_client(sim, "sim-client1-read")
    reply = await reader.call({"paymentagent_withdraw": 1, "amount": 10, "currency": "USD"})
    assert reply["error"]["code"] == "InputValidationFailed"
    reply = await reader.call(
        {
            "paymentagent_withdraw": 1,
            "amount": 10,
            "currency": "USD",
            "paymentagent_loginid": "CR90000000",
            "verification_code": "abcdefgh",
        }
    )
    assert reply["error"] == {
        "code": "PermissionDenied",
        "message": "Permission denied, requires payments scope(s).",
    }
    agent = await connect_client(sim, AGENT_TOKEN)
    assert "error" not in await agent.call({"paymentagent_details": 1})
    reply = await reader.call({"paymentagent_details": 1})
    assert reply["error"]["message"] == "Permission denied, requires admin scope(s)."


async def test_rate_limit_comes_first_and_is_per_account(
    make_sim: MakeSim, connect_client: ConnectClient
) -> None:
    sim = await make_sim(rate_limits=RateLimitConfig(general_minutely=3, general_hourly=100))
    a = await connect_client(sim, ALICE_TOKEN)  # authorize counts as the first call (by connection)
    b = await connect_client(sim, ALICE_TOKEN)
    replies = [await a.call({"balance": 1}) for _ in range(3)]
    assert all("error" not in r for r in replies)
    # the account's window is shared across connections, and RateLimit is checked before validation
    reply = await b.call({"balance": 1, "bogus": 1})
    assert reply["error"] == {"code": "RateLimit", "message": "You have reached the rate limit for balance."}
    status = await (await connect_client(sim)).call({"website_status": 1})
    limits = status["website_status"]["api_call_limits"]["max_requestes_general"]
    assert (limits["minutely"], limits["hourly"]) == (3, 100)
    assert sim.engine.limiter.refused == {"balance": 1}  # counted, for /stats/rate_limited


def test_sliding_windows_count_each_window_on_its_own() -> None:
    now = [1000.0]
    windows = SlidingWindows(lambda: now[0])
    limits = [(60.0, 3), (3600.0, 5)]
    key = ("login", "CR90000001", "general")
    assert [windows.allow(key, limits) for _ in range(4)] == [True, True, True, False]  # the minute is full
    assert windows.allow(("login", "CR90000002", "general"), limits)  # another account: its own windows
    now[0] += 60.0  # the three hits leave the minute, not the hour; the refused one was never counted
    assert [windows.allow(key, limits) for _ in range(3)] == [True, True, False]  # the hour is full
    now[0] += 3540.0  # the first three leave the hour too: room for three more (minute 3, hour 5)
    assert [windows.allow(key, limits) for _ in range(4)] == [True, True, True, False]
    windows.forget("login")
    assert windows.allow(key, limits)


async def test_ping_flood_closes_with_policy_violation(
    make_sim: MakeSim, connect_client: ConnectClient
) -> None:
    sim = await make_sim(rate_limits=RateLimitConfig(ping_per_second=5))
    client = await connect_client(sim)
    for _ in range(5):
        assert (await client.call({"ping": 1}))["ping"] == "pong"
    reply = await client.call({"ping": 1})
    assert reply["error"]["code"] == "RateLimit"
    with pytest.raises(ConnectionClosed) as info:
        await client.recv(timeout=2)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_sanity_check(client: Client) -> None:
    reply = await client.call({"ping": 1, "passthrough": {"bad key!": 1}})
    assert reply["error"] == {"code": "SanityCheckFailed", "message": "Parameters sanity check failed."}
    reply = await client.call({"ping": 1, "passthrough": {"x": "a" * 301}})
    assert reply["error"]["code"] == "SanityCheckFailed"


async def test_compression_negotiated_and_configurable(
    make_sim: MakeSim, connect_client: ConnectClient
) -> None:
    on = await make_sim()
    client = await connect_client(on)
    assert [e.name for e in client.ws.protocol.extensions] == ["permessage-deflate"]
    off = await make_sim(compression=False)
    client = await connect_client(off)
    assert client.ws.protocol.extensions == []
    assert (await client.call({"ping": 1}))["ping"] == "pong"


async def test_idle_socket_is_dropped_and_traffic_keeps_it(
    make_sim: MakeSim, connect_client: ConnectClient
) -> None:
    sim = await make_sim(idle_timeout=0.6)
    idle = await connect_client(sim, ping_interval=None)
    busy = await connect_client(sim, ping_interval=None)
    for _ in range(5):
        await asyncio.sleep(0.25)
        assert (await busy.call({"ping": 1}))["ping"] == "pong"
    with pytest.raises(ConnectionClosed):
        await idle.recv(timeout=1)
    # protocol-level pings count as traffic too (Mojo's stream inactivity timer sees any bytes)
    pinged = await connect_client(sim, ping_interval=0.2)
    await asyncio.sleep(1.2)
    assert (await pinged.call({"ping": 1}))["ping"] == "pong"
