"""The REST simulator itself: endpoints, generations, OAuth2 code + PKCE, faults, shared books."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import signal
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from .conftest import AGENT, ALICE, World

pytestmark = pytest.mark.integration

HEADERS = {"Deriv-App-ID": "app-sim-1"}


async def _req(world: World, method: str, path: str, token: str | None = AGENT, body: Any = None) -> Any:
    headers = dict(HEADERS)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with world.http.request(method, world.rest.base_url + path, json=body, headers=headers) as r:
        return r.status, await r.json()


async def test_directory_endpoints(world: World) -> None:
    status, body = await _req(world, "GET", "/payment-agents/v1/agents?currency=USD&country=ke")
    assert status == 200 and [a["id"] for a in body["data"]] == [1001]
    status, body = await _req(world, "GET", "/payment-agents/v1/agents?country=ke")
    assert (status, body["errors"][0]["code"]) == (400, "InputError")
    status, body = await _req(world, "GET", "/payment-agents/v1/agents/me")
    assert status == 200 and body["data"]["cashier_withdraw"] is True
    status, body = await _req(world, "GET", "/payment-agents/v1/agents/abc")
    assert (status, body["errors"][0]["code"]) == (400, "InvalidAgentID")
    status, body = await _req(world, "GET", "/payment-agents/v1/agents/77")
    assert (status, body["errors"][0]["code"]) == (404, "AgentNotFound")
    status, body = await _req(world, "GET", "/payment-agents/v1/agent-statistics")
    assert body["data"] == {"available_countries": ["ke"], "available_currencies": ["USD"]}
    status, body = await _req(world, "GET", "/account/v1/nickname", token=ALICE)
    assert body["data"]["nickname"] == "alice_w"


async def test_auth_scope_and_app_id(world: World) -> None:
    status, body = await _req(world, "GET", "/payment-agents/v1/agent-statistics", token=None)
    assert status == 401
    status, body = await _req(
        world, "GET", "/payment-agents/v1/agent-statistics", token="sim-rest-agent-trade"
    )
    assert status == 403 and "payment scope" in body["errors"][0]["detail"]["message"]
    async with world.http.get(
        world.rest.base_url + "/payment-agents/v1/agent-statistics",
        headers={"Authorization": f"Bearer {AGENT}"},
    ) as r:
        assert r.status == 401 and "Deriv-App-ID" in (await r.json())["errors"][0]["detail"]["message"]


async def test_generations(world: World) -> None:
    transfer = {"data": {"to_nickname": "brian_o", "amount": "3.00", "currency": "USD", "request_id": "g-1"}}
    status, body = await _req(world, "POST", "/payment-agents/v1/transfer", body=transfer)
    assert body["data"]["client_is_agent"] is False
    status, _ = await _req(world, "GET", "/payment-agents/v1/transfer/g-1")
    assert status == 200
    dry = {"data": {**transfer["data"], "request_id": "g-1", "dry_run": True}}
    status, body = await _req(world, "POST", "/payment-agents/v1/transfer", body=dry)
    assert body["data"] == {"status": "dry_run_ok", "transaction_id": None, "client_real_name": None,
                            "client_is_agent": False}  # fmt: skip
    await world.generation("june")
    status, _ = await _req(world, "GET", "/payment-agents/v1/transfer/g-1")
    assert status == 404
    status, _ = await _req(world, "GET", "/payment-agents/v1/clients/me", token=ALICE)
    assert status == 404
    transfer["data"]["request_id"] = "g-2"
    status, body = await _req(world, "POST", "/payment-agents/v1/transfer", body=transfer)
    assert body["data"]["status"] == "complete" and set(body["data"]) == {"status", "transaction_id"}
    assert world.executed("g-1") == 1 and world.executed("g-2") == 1


async def test_client_settings_and_deposit_disabled(world: World) -> None:
    status, body = await _req(world, "GET", "/payment-agents/v1/clients/me", token=ALICE)
    assert body["data"] == {"deposit_enabled": True, "withdraw_enabled": True, "show_real_name": False}
    status, body = await _req(
        world, "PATCH", "/payment-agents/v1/clients/me", token=ALICE, body={"data": {"show_real_name": True}}
    )
    assert body["data"]["show_real_name"] is True
    transfer = {"data": {"to_nickname": "alice_w", "amount": "3.00", "currency": "USD", "request_id": "s-1"}}
    status, body = await _req(world, "POST", "/payment-agents/v1/transfer", body=transfer)
    assert body["data"]["client_real_name"] == "Alice Wanjiru"
    await world.control("PATCH", "/identities/CR90000001", {"deposit_enabled": False})
    transfer["data"]["request_id"] = "s-2"
    status, body = await _req(world, "POST", "/payment-agents/v1/transfer", body=transfer)
    assert (status, body["errors"][0]["code"]) == (400, "NoClientWallet")


async def test_otp_rate_limit_fault(world: World) -> None:
    await world.fault(kind="otp_rate_limit", endpoint="verification_code", retry_in=90, times=1)
    body = {"data": {"agent_id": 1001, "amount": "15.00", "currency": "USD"}}
    status, answer = await _req(world, "POST", "/payment-agents/v1/withdraw/verification_code", ALICE, body)
    error = answer["errors"][0]
    assert (status, error["code"]) == (400, "OtpRateLimitExceeded")
    assert error["detail"]["next_request_at"] == int(world.clock.now()) + 90


async def test_statement_pages_by_cursor(world: World) -> None:
    await world.control("POST", "/config", {"rate_limit_enabled": False})
    for i in range(105):
        transfer = {
            "data": {"to_nickname": "carol_n", "amount": "1.00", "currency": "USD", "request_id": f"p-{i}"}
        }
        status, _ = await _req(world, "POST", "/payment-agents/v1/transfer", body=transfer)
        assert status == 200
    status, page = await _req(world, "GET", "/wallet/v1/transactions/payment_agent")
    assert (
        len(page["data"]["transactions"]) == 100 and page["data"]["transactions"][0]["request_id"] == "p-104"
    )
    status, rest = await _req(world, "GET", page["links"]["next"])
    assert [t["request_id"] for t in rest["data"]["transactions"]] == ["p-4", "p-3", "p-2", "p-1", "p-0"]
    assert rest["links"]["next"] is None
    status, one = await _req(world, "GET", "/wallet/v1/transactions/payment_agent?request_id=p-7")
    assert [t["request_id"] for t in one["data"]["transactions"]] == ["p-7"]


async def test_the_books_are_the_v3_books(world: World) -> None:
    transfer = {"data": {"to_nickname": "alice_w", "amount": "20.00", "currency": "USD", "request_id": "b-1"}}
    await _req(world, "POST", "/payment-agents/v1/transfer", body=transfer)
    async with world.http.get(f"{world.v3.control_url}/accounts/CR90000001") as r:
        assert (await r.json())["balance"] == "1020.00"
    async with world.http.get(f"{world.v3.control_url}/books/transfers", params={"reference": "b-1"}) as r:
        assert (await r.json())["count"] == 1


def _pkce() -> tuple[str, str]:
    verifier = "v" * 43 + "-pkce-verifier"
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def _authorize(world: World, challenge: str) -> str:
    params = {
        "response_type": "code", "client_id": "app-sim-1", "redirect_uri": "https://penpay.example/cb",
        "scope": "payment", "state": "st-1", "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    async with world.http.get(
        world.rest.base_url + "/oauth2/auth", params=params, allow_redirects=False
    ) as r:
        assert r.status == 302
        location = urlsplit(r.headers["Location"])
    query = parse_qs(location.query)
    assert location.netloc == "penpay.example" and query["state"] == ["st-1"]
    return query["code"][0]


async def _token(world: World, form: dict[str, str]) -> tuple[int, Any]:
    async with world.http.post(world.rest.base_url + "/oauth2/token", data=form) as r:
        return r.status, await r.json()


async def test_oauth_code_with_pkce(world: World) -> None:
    verifier, challenge = _pkce()
    code = await _authorize(world, challenge)
    form = {"grant_type": "authorization_code", "client_id": "app-sim-1", "code": code,
            "redirect_uri": "https://penpay.example/cb", "code_verifier": verifier}  # fmt: skip
    status, tokens = await _token(world, {**form, "code_verifier": "w" * 50})
    assert (status, tokens["error"]) == (400, "invalid_grant")  # and the code is spent
    code = await _authorize(world, challenge)
    status, tokens = await _token(world, {**form, "code": code})
    assert status == 200 and tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
    status, again = await _token(world, {**form, "code": code})
    assert (status, again["error"]) == (400, "invalid_grant")  # single use
    status, _ = await _req(world, "GET", "/payment-agents/v1/clients/me", token=tokens["access_token"])
    assert status == 200
    refresh = {
        "grant_type": "refresh_token",
        "client_id": "app-sim-1",
        "refresh_token": tokens["refresh_token"],
    }
    status, fresh = await _token(world, refresh)
    assert status == 200 and fresh["access_token"] != tokens["access_token"]
    status, _ = await _token(world, refresh)
    assert status == 400  # refresh tokens rotate
    world.clock.advance(3601)
    status, _ = await _req(world, "GET", "/payment-agents/v1/clients/me", token=fresh["access_token"])
    assert status == 401


async def test_penpay_sim_deriv_serves_rest_on_the_same_books() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "penpay", "sim", "deriv", "--port", "0", "--control-port", "0",
        "--rest-port", "0", "--rest-generation", "june",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        headers = {"Authorization": f"Bearer {AGENT}", **HEADERS}
        body = {
            "data": {"to_nickname": "brian_o", "amount": "1.00", "currency": "USD", "request_id": "cli-1"}
        }
        async with aiohttp.ClientSession() as http:
            async with http.post(
                line["rest_url"] + "/payment-agents/v1/transfer", json=body, headers=headers
            ) as r:
                assert r.status == 200 and set((await r.json())["data"]) == {"status", "transaction_id"}
            async with http.get(line["rest_url"] + "/payment-agents/v1/transfer/cli-1", headers=headers) as r:
                assert r.status == 404  # the June generation has no transfer status
            async with http.get(line["control_url"] + "/books/transfers", params={"reference": "cli-1"}) as r:
                assert (await r.json())["count"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
