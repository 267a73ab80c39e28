"""Cookie sessions and double-submit CSRF, through the real bridge and backend."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.http_bridge.conftest import (
    ACCESS_TOKEN,
    NEW_ACCESS_TOKEN,
    NEW_REFRESH_TOKEN,
    PASSWORD,
    REFRESH_TOKEN,
    TEST_CONFIG,
    Bridge,
    cookie_header,
    set_cookies,
)

pytestmark = pytest.mark.integration


async def _login(bridge: Bridge) -> dict[str, str]:
    async with bridge.http.post("/v1/sessions", json={"login": "ann", "password": PASSWORD}) as response:
        assert response.status == 200, await response.text()
        cookies = set_cookies(response)
    return {name: morsel.value for name, morsel in cookies.items()}


async def test_login_sets_the_session_cookies_with_their_attributes(bridge: Bridge) -> None:
    async with bridge.http.post("/v1/sessions", json={"login": "ann", "password": PASSWORD}) as response:
        assert response.status == 200
        body = await response.json()
        cookies = set_cookies(response)
    assert set(cookies) == {"penpay_access", "penpay_refresh", "penpay_csrf"}
    access, refresh, csrf = cookies["penpay_access"], cookies["penpay_refresh"], cookies["penpay_csrf"]
    assert (access.value, refresh.value) == (ACCESS_TOKEN, REFRESH_TOKEN)
    for morsel in (access, refresh, csrf):
        assert morsel["secure"] is True
        assert morsel["samesite"] == "Strict"
        assert morsel["path"] == "/"
    assert access["httponly"] is True and refresh["httponly"] is True
    assert not csrf["httponly"]  # scripts must read it to echo it
    assert access["max-age"] == "900"
    assert refresh["max-age"] == "86400" and csrf["max-age"] == "86400"
    assert len(csrf.value) >= 32
    assert "access_token" not in body and "refresh_token" not in body  # PEC §13: HttpOnly cookies only


async def test_each_login_gets_a_new_csrf_token(bridge: Bridge) -> None:
    first, second = await _login(bridge), await _login(bridge)
    assert first["penpay_csrf"] != second["penpay_csrf"]


async def test_failed_login_sets_no_cookie(bridge: Bridge) -> None:
    async with bridge.http.post("/v1/sessions", json={"login": "ann", "password": "nope"}) as response:
        assert response.status == 401
        assert set_cookies(response) == {}


async def test_the_access_cookie_becomes_the_authorization_metadata(bridge: Bridge) -> None:
    cookies = await _login(bridge)
    async with bridge.http.get("/v1/whoami", headers=cookie_header(**cookies)) as response:
        assert response.status == 200
    assert bridge.recorder.last("Whoami").metadata["authorization"] == f"Bearer {ACCESS_TOKEN}"


async def test_an_authorization_header_wins_over_the_cookie(bridge: Bridge) -> None:
    cookies = await _login(bridge)
    headers = {**cookie_header(**cookies), "Authorization": "Bearer explicit-token-1"}
    async with bridge.http.post("/v1/whoami", json={}, headers=headers) as response:
        assert response.status == 200  # exempt from CSRF: not authenticated by the cookie
    assert bridge.recorder.last("Whoami").metadata["authorization"] == "Bearer explicit-token-1"


@pytest.mark.parametrize("csrf", [None, "", "wrong-token"])
async def test_a_cookie_authenticated_post_without_the_csrf_token_is_refused(
    bridge: Bridge, csrf: str | None
) -> None:
    cookies = await _login(bridge)
    headers = cookie_header(**cookies)
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    async with bridge.http.post("/v1/whoami", json={"note": "x"}, headers=headers) as response:
        assert response.status == 403
        body = await response.json()
    assert body["code"] == 7 and "CSRF" in body["message"]
    assert bridge.recorder.names() == ["Login"]  # the backend never saw the POST


async def test_a_csrf_token_without_its_cookie_is_refused(bridge: Bridge) -> None:
    cookies = await _login(bridge)
    headers = {
        **cookie_header(penpay_access=cookies["penpay_access"]),
        "X-CSRF-Token": cookies["penpay_csrf"],
    }
    async with bridge.http.delete("/v1/items/x", headers=headers) as response:
        assert response.status == 403
    assert bridge.recorder.names() == ["Login"]


async def test_a_cookie_authenticated_post_with_the_csrf_token_goes_through(bridge: Bridge) -> None:
    cookies = await _login(bridge)
    headers = {**cookie_header(**cookies), "X-CSRF-Token": cookies["penpay_csrf"]}
    async with bridge.http.post("/v1/whoami", json={"note": "x"}, headers=headers) as response:
        assert response.status == 200
    assert bridge.recorder.last("Whoami").metadata["authorization"] == f"Bearer {ACCESS_TOKEN}"


async def test_a_cookie_authenticated_get_needs_no_csrf_token(bridge: Bridge) -> None:
    cookies = await _login(bridge)
    async with bridge.http.get("/v1/items/x", headers=cookie_header(**cookies)) as response:
        assert response.status == 200


async def test_refresh_takes_the_refresh_cookie_and_rotates_the_cookies(bridge: Bridge) -> None:
    cookies = await _login(bridge)
    headers = {**cookie_header(**cookies), "X-CSRF-Token": cookies["penpay_csrf"]}
    async with bridge.http.post("/v1/sessions:refresh", json={}, headers=headers) as response:
        assert response.status == 200, await response.text()
        rotated = set_cookies(response)
        body = await response.json()
    call = bridge.recorder.last("Refresh")
    assert call.request.refresh_token == REFRESH_TOKEN
    assert "authorization" not in call.metadata  # an expired access cookie must not spoil a refresh
    assert rotated["penpay_access"].value == NEW_ACCESS_TOKEN
    assert rotated["penpay_refresh"].value == NEW_REFRESH_TOKEN
    assert rotated["penpay_csrf"].value != cookies["penpay_csrf"]
    assert "access_token" not in body and "refresh_token" not in body  # a script must not read them
    assert body["user_id"] == "user-1" and body["expires_in"] == "900"


async def test_refresh_by_cookie_needs_the_csrf_token(bridge: Bridge) -> None:
    cookies = await _login(bridge)
    async with bridge.http.post(
        "/v1/sessions:refresh", json={}, headers=cookie_header(**cookies)
    ) as response:
        assert response.status == 403
    assert bridge.recorder.names() == ["Login"]


async def test_refresh_with_the_token_in_the_body_needs_no_cookie(bridge: Bridge) -> None:
    async with bridge.http.post("/v1/sessions:refresh", json={"refresh_token": REFRESH_TOKEN}) as response:
        assert response.status == 200
        body = await response.json()
        assert set_cookies(response)["penpay_access"].value == NEW_ACCESS_TOKEN
    assert bridge.recorder.last("Refresh").request.refresh_token == REFRESH_TOKEN
    assert "access_token" not in body and "refresh_token" not in body


async def test_asking_for_tokens_in_the_body_is_refused_unless_the_setting_allows(bridge: Bridge) -> None:
    ask = {"X-PenPay-Token-Delivery": "body"}
    async with bridge.http.post(
        "/v1/sessions", json={"login": "ann", "password": PASSWORD}, headers=ask
    ) as response:
        assert response.status == 200
        body = await response.json()
        assert set_cookies(response)["penpay_access"].value == ACCESS_TOKEN  # the cookie flow, as ever
    assert "access_token" not in body and "refresh_token" not in body


async def test_the_explicit_token_in_body_flow_for_non_browser_clients(serve_bridge: Any) -> None:
    ask = {"X-PenPay-Token-Delivery": "body"}
    async with serve_bridge(dataclasses.replace(TEST_CONFIG, tokens_in_body=True)) as bridge:
        async with bridge.http.post(
            "/v1/sessions", json={"login": "ann", "password": PASSWORD}, headers=ask
        ) as response:
            assert response.status == 200
            body = await response.json()
            assert set_cookies(response) == {}  # a non-browser client: no cookie jar to fill
        assert (body["access_token"], body["refresh_token"]) == (ACCESS_TOKEN, REFRESH_TOKEN)
        # without the request flag, the cookie flow even with the setting on
        async with bridge.http.post("/v1/sessions", json={"login": "ann", "password": PASSWORD}) as response:
            body = await response.json()
            cookies = set_cookies(response)
        assert "access_token" not in body and cookies["penpay_access"].value == ACCESS_TOKEN
        # a request that a session cookie authenticates is a browser's: never in the body
        async with bridge.http.post(
            "/v1/sessions:refresh",
            json={},
            headers={
                **ask,
                **cookie_header(**{k: v.value for k, v in cookies.items()}),
                "X-CSRF-Token": cookies["penpay_csrf"].value,
            },
        ) as response:
            assert response.status == 200
            body = await response.json()
        assert "access_token" not in body and "refresh_token" not in body


async def test_logout_clears_the_cookies(bridge: Bridge) -> None:
    cookies = await _login(bridge)
    headers = {**cookie_header(**cookies), "X-CSRF-Token": cookies["penpay_csrf"]}
    async with bridge.http.post("/v1/sessions:logout", json={}, headers=headers) as response:
        assert response.status == 200
        cleared = set_cookies(response)
    assert set(cleared) == {"penpay_access", "penpay_refresh", "penpay_csrf"}
    for morsel in cleared.values():
        assert morsel.value == ""
        assert morsel["max-age"] == "0"
        assert morsel["path"] == "/"
    call = bridge.recorder.last("Logout")
    assert call.request.refresh_token == REFRESH_TOKEN  # so the backend can revoke it
    assert call.metadata["authorization"] == f"Bearer {ACCESS_TOKEN}"


async def test_a_forged_logout_is_refused_and_keeps_the_cookies(bridge: Bridge) -> None:
    cookies = await _login(bridge)
    async with bridge.http.post("/v1/sessions:logout", json={}, headers=cookie_header(**cookies)) as response:
        assert response.status == 403
        assert set_cookies(response) == {}
    assert "Logout" not in bridge.recorder.names()
