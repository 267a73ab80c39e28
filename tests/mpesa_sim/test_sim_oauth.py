from __future__ import annotations

import aiohttp
import pytest

from mpesa_adapter.simulator import DarajaSimulator

from .conftest import Daraja, fast_config

pytestmark = pytest.mark.integration


async def test_token_shape_and_expires_in_is_a_string(daraja: Daraja) -> None:
    resp = await daraja.oauth()
    assert resp.status == 200
    body = await resp.json()
    assert body["expires_in"] == "3599"
    assert isinstance(body["access_token"], str) and len(body["access_token"]) == 28


async def test_new_token_invalidates_the_previous_one(daraja: Daraja) -> None:
    first = await daraja.login()
    second = await daraja.login()
    assert first != second
    status, body = await daraja.stk()
    assert status == 200
    status, body = await daraja.post("/mpesa/stkpush/v1/processrequest", daraja.stk_body(), token=first)
    assert status == 404
    assert body["errorCode"] == "404.001.03" and body["errorMessage"] == "Invalid Access Token"
    assert set(body) == {"requestId", "errorCode", "errorMessage"}


@pytest.mark.parametrize(
    "path",
    [
        "/mpesa/stkpush/v1/processrequest",
        "/mpesa/stkpushquery/v1/query",
        "/mpesa/b2c/v3/paymentrequest",
        "/mpesa/transactionstatus/v1/query",
        "/mpesa/accountbalance/v1/query",
    ],
)
async def test_bad_token_is_rejected_on_every_api(daraja: Daraja, path: str) -> None:
    status, body = await daraja.post(path, {}, token="not-a-token")
    assert (status, body["errorCode"], body["errorMessage"]) == (404, "404.001.03", "Invalid Access Token")


async def test_expired_token_via_control(daraja: Daraja) -> None:
    await daraja.login()
    status, body = await daraja.control("POST", "/oauth/expire")
    assert status == 200 and body["expired"] == 1
    status, body = await daraja.stk()
    assert (status, body["errorCode"]) == (404, "404.001.03")


async def test_token_lifetime_runs_out() -> None:
    async with DarajaSimulator(fast_config(token_ttl=0)) as sim, aiohttp.ClientSession() as session:
        daraja = Daraja(session, sim, None)
        resp = await daraja.oauth()
        assert (await resp.json())["expires_in"] == "0"
        _, body = await daraja.stk()
        assert body["errorCode"] == "404.001.03"


async def test_oauth_errors(daraja: Daraja) -> None:
    resp = await daraja.oauth(grant_type="password")
    assert resp.status == 400 and (await resp.json())["errorCode"] == "400.008.02"
    async with daraja.session.get(
        f"{daraja.base}/oauth/v1/generate?grant_type=client_credentials",
        headers={"Authorization": "Bearer x"},
    ) as resp:
        assert resp.status == 400 and (await resp.json())["errorCode"] == "400.008.01"
    async with daraja.session.post(f"{daraja.base}/oauth/v1/generate?grant_type=client_credentials") as resp:
        assert resp.status == 405 and (await resp.json())["errorCode"] == "405.001"


async def test_configured_consumer_credentials_are_enforced() -> None:
    config = fast_config(consumer_key="ck", consumer_secret="cs")
    async with DarajaSimulator(config) as sim, aiohttp.ClientSession() as session:
        daraja = Daraja(session, sim, None)
        bad = await daraja.oauth("ck", "wrong")
        # Daraja answers a wrong key/secret with an empty body
        assert bad.status == 400 and bad.headers["Content-Length"] == "0"
        good = await daraja.oauth("ck", "cs")
        assert good.status == 200


async def test_missing_or_non_bearer_header(daraja: Daraja) -> None:
    async with daraja.session.post(f"{daraja.base}/mpesa/stkpush/v1/processrequest", json={}) as resp:
        body = await resp.json()
    assert (resp.status, body["errorCode"]) == (404, "404.001.04")


async def test_gateway_envelopes_for_unknown_path_and_wrong_method(daraja: Daraja) -> None:
    async with daraja.session.get(f"{daraja.base}/mpesa/nothing/v1/here") as resp:
        assert (resp.status, (await resp.json())["errorCode"]) == (404, "404.001.01")
    async with daraja.session.get(f"{daraja.base}/mpesa/stkpush/v1/processrequest") as resp:
        assert (resp.status, (await resp.json())["errorCode"]) == (405, "405.001")


async def test_per_api_invalid_token_style() -> None:
    async with (
        DarajaSimulator(fast_config(invalid_token_style="per_api")) as sim,
        aiohttp.ClientSession() as s,
    ):
        daraja = Daraja(s, sim, None)
        _, b2c = await daraja.post("/mpesa/b2c/v3/paymentrequest", {}, token="zzz")
        _, status = await daraja.post("/mpesa/transactionstatus/v1/query", {}, token="zzz")
        _, push = await daraja.post("/mpesa/stkpush/v1/processrequest", {}, token="zzz")
    assert b2c["errorCode"] == "401.002.01" and "zzz" in b2c["errorMessage"]
    assert status["errorCode"] == "400.003.01"
    assert push["errorCode"] == "404.001.03"
