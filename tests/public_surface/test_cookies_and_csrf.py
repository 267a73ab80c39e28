"""Browser sessions on the real API: login sets the cookies, later calls are authenticated by the cookie
alone, a state-changing call needs the CSRF token echoed in X-CSRF-Token, and logout ends the session
at once (the access token stops working before it expires)."""

from __future__ import annotations

import pytest

from persistence.tables import refresh_tokens, user_devices, verification_codes
from tests.api.conftest import PASSWORD, unique_email, unique_phone

from .conftest import Surface, error_shape

pytestmark = pytest.mark.integration


async def test_login_sets_httponly_secure_strict_cookies(surface: Surface) -> None:
    browser = surface.browser()
    email = unique_email()
    await browser.post("/v1/users", {"email": email, "phone_number": unique_phone(), "password": PASSWORD})
    login = await browser.post(
        "/v1/sessions",
        {"login": email, "password": PASSWORD, "device_id": "cookie-device-1", "device_name": "Web"},
    )
    assert login.status == 200
    cookies = login.set_cookies
    assert set(cookies) == {"penpay_access", "penpay_refresh", "penpay_csrf"}
    for morsel in cookies.values():
        assert morsel["secure"] is True and morsel["samesite"] == "Strict" and morsel["path"] == "/"
    assert cookies["penpay_access"]["httponly"] is True and cookies["penpay_refresh"]["httponly"] is True
    assert not cookies["penpay_csrf"]["httponly"]  # the page's script reads it to echo it
    # PEC §13: the tokens travel in the HttpOnly cookies only, never where a script reads them
    assert "access_token" not in login.json and "refresh_token" not in login.json
    assert cookies["penpay_access"]["max-age"] == str(login.json["expires_in"])
    assert cookies["penpay_refresh"]["max-age"] == str(login.json["refresh_expires_in"])
    # The access token is a real one: the API accepts it.
    principal = surface.tokens.verify_principal(cookies["penpay_access"].value, now=surface.clock.now())
    assert principal.subject == login.json["user_id"]


async def test_the_cookie_alone_authenticates(surface: Surface) -> None:
    user = await surface.sign_up()
    devices = await user.browser.get("/v1/devices")  # no Authorization header: only the Cookie
    assert devices.status == 200
    assert [d["device_id"] for d in devices.json["devices"] if d["current"]] == [user.device_id]
    without = await user.browser.get("/v1/devices", send_cookies=False)
    error_shape(without, 401, 16)


async def test_a_state_changing_call_needs_the_csrf_token(surface: Surface) -> None:
    user = await surface.sign_up()
    before = (await surface.count(verification_codes), len(surface.notifier.sent))

    forged = await user.browser.post("/v1/users/me/email:requestVerification", csrf=False)
    assert forged.status == 403
    assert forged.json["code"] == 7 and forged.json["message"] == "CSRF token missing or invalid"
    wrong = await user.browser.post(
        "/v1/users/me/email:requestVerification", headers={"X-CSRF-Token": "not-the-cookie-value"}
    )
    assert wrong.status == 403
    removed = await user.browser.delete(f"/v1/devices/{user.device_id}", csrf=False)
    assert removed.status == 403
    logout = await user.browser.post("/v1/sessions:logout", csrf=False)
    assert logout.status == 403 and logout.set_cookies == {}
    # None of them reached the API: no code sent, the device and the session are still there.
    assert (await surface.count(verification_codes), len(surface.notifier.sent)) == before
    assert await surface.count(user_devices) == 1
    assert (await user.browser.get("/v1/devices")).status == 200

    accepted = await user.browser.post("/v1/users/me/email:requestVerification")  # header echoed
    assert accepted.status == 200
    assert await surface.count(verification_codes) == before[0] + 1


async def test_logout_ends_the_session_at_once(surface: Surface) -> None:
    user = await surface.sign_up()
    access = user.browser.cookies["penpay_access"]
    assert (await user.browser.get("/v1/devices")).status == 200

    assert (await user.browser.post("/v1/sessions:logout")).status == 200
    assert await surface.count(refresh_tokens) == 1  # revoked, not deleted

    # The access token has not expired, yet neither the old cookie nor the token as a bearer works.
    assert surface.tokens.verify_principal(access, now=surface.clock.now())
    by_cookie = await surface.browser().get("/v1/devices", headers={"Cookie": f"penpay_access={access}"})
    error_shape(by_cookie, 401, 16)
    assert by_cookie.reason == "SESSION_ENDED"
    by_bearer = await surface.browser().get("/v1/devices", headers={"Authorization": f"Bearer {access}"})
    assert by_bearer.status == 401 and by_bearer.reason == "SESSION_ENDED"

    # Signing in again opens a new session; the operator's tokens (no session) are unaffected.
    again = await surface.browser().post(
        "/v1/sessions",
        {"login": user.email, "password": PASSWORD, "device_id": user.device_id, "device_name": "Web"},
    )
    assert again.status == 200
    fresh = again.set_cookies["penpay_access"].value
    assert (
        await surface.browser().get("/v1/devices", headers={"Authorization": f"Bearer {fresh}"})
    ).status == 200
    assert (await surface.operator().get("/v1/ops/outbox_stats")).status == 200
