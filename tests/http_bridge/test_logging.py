"""Every request is logged once, and no credential, token, password, code or body reaches a log."""

from __future__ import annotations

import logging

import pytest
import structlog

from tests.http_bridge.conftest import (
    ACCESS_TOKEN,
    PASSWORD,
    REFRESH_TOKEN,
    Bridge,
    cookie_header,
    set_cookies,
)

pytestmark = pytest.mark.integration

HEADER_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLXNlY3JldA"
VERIFICATION_CODE = "739104"
PATH_SECRET = "path-secret-5f1d2c"
QUERY_SECRET = "query-secret-9a8b7c"
IDEMPOTENCY_KEY = "idem-secret-77aa"


async def test_no_secret_reaches_the_logs(
    bridge: Bridge, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        async with bridge.http.post("/v1/sessions", json={"login": "ann", "password": PASSWORD}) as response:
            assert response.status == 200
            cookies = {name: morsel.value for name, morsel in set_cookies(response).items()}
        csrf = cookies["penpay_csrf"]
        headers = {**cookie_header(**cookies), "X-CSRF-Token": csrf}
        async with bridge.http.post(
            "/v1/whoami", json={"note": VERIFICATION_CODE}, headers=headers
        ) as response:
            assert response.status == 200
        headers = {"Authorization": f"Bearer {HEADER_TOKEN}", "Idempotency-Key": IDEMPOTENCY_KEY}
        async with bridge.http.post(
            "/v1/items", json={"title": VERIFICATION_CODE}, headers=headers, params={"password": QUERY_SECRET}
        ) as response:
            assert response.status == 201
        async with bridge.http.get(f"/v1/items/{PATH_SECRET}", params={"tags": QUERY_SECRET}) as response:
            assert response.status == 200
        json_headers = {**headers, "Content-Type": "application/json"}
        async with bridge.http.post(
            "/v1/items", data=f'{{"title": {PASSWORD}', headers=json_headers
        ) as response:
            assert response.status == 400  # the parse error quotes the body to the client, not to the log
        async with bridge.http.get(f"/nowhere/{PATH_SECRET}?token={QUERY_SECRET}") as response:
            assert response.status == 404
        async with bridge.http.post(
            "/v1/sessions:refresh", json={}, headers=cookie_header(**cookies)
        ) as response:
            assert response.status == 403  # CSRF refused
    secrets = [
        PASSWORD,
        ACCESS_TOKEN,
        REFRESH_TOKEN,
        csrf,
        HEADER_TOKEN,
        VERIFICATION_CODE,
        PATH_SECRET,
        QUERY_SECRET,
        IDEMPOTENCY_KEY,
        "Bearer",
    ]
    requests = [e for e in events if e["event"] == "http_request"]
    assert len(requests) == 7
    assert [e["status"] for e in requests] == [200, 200, 201, 200, 400, 404, 403]
    assert requests[0]["rpc"] == "penpay.testing.v1.EchoService/Login"
    assert requests[1]["auth"] == "cookie" and requests[2]["auth"] == "header"
    assert requests[3]["route"] == "/v1/items/{item_id}"
    assert requests[6]["csrf"] == "refused"
    captured = capfd.readouterr()
    everything = "\n".join([repr(events), caplog.text, captured.out, captured.err])
    leaked = [s for s in secrets if s in everything]
    assert leaked == []


async def test_the_checker_would_see_a_leak(bridge: Bridge) -> None:
    """The capture above really captures what the bridge logs (so a logged secret would be found)."""
    with structlog.testing.capture_logs() as events:
        async with bridge.http.get("/v1/items/x") as response:
            assert response.status == 200
        structlog.get_logger("penpay_api.http").info("probe", value=PATH_SECRET)
    assert any(e["event"] == "http_request" for e in events)
    assert PATH_SECRET in repr(events)
