"""Password reset and change through the HTTP bridge, as a browser frontend calls them (cookies,
double-submit CSRF): the new password works, the old session cookie no longer does."""

from __future__ import annotations

import pytest

from tests.api.conftest import PASSWORD

from .conftest import Surface, error_shape

pytestmark = pytest.mark.integration

INVALID_ARGUMENT, UNAUTHENTICATED = 3, 16
NEW_PASSWORD = "a brand new one 42"


async def test_a_password_reset_by_sms_over_http_ends_the_cookie_session(surface: Surface) -> None:
    user = await surface.sign_up()
    await surface.verify_phone(user)
    stranger = surface.browser()  # no session: a forgotten password

    asked = await stranger.post("/v1/password:requestReset", {"login": user.phone})
    assert asked.status == 200 and asked.json == {"expires_in": 600}
    body = surface.notifier.latest("sms", user.phone).body
    code = body.split("code is ")[1][:6]
    wrong = await stranger.post(
        "/v1/password:reset",
        {"login": user.phone, "code": "000000" if code != "000000" else "1", "new_password": NEW_PASSWORD},
    )
    error_shape(wrong, 400, INVALID_ARGUMENT)
    assert wrong.reason == "VERIFICATION_CODE_INVALID" and NEW_PASSWORD.encode() not in wrong.raw

    done = await stranger.post(
        "/v1/password:reset", {"login": user.phone, "code": code, "new_password": NEW_PASSWORD}
    )

    assert done.status == 200 and done.json == {"sessions_revoked": 1}
    error_shape(await user.browser.get("/v1/devices"), 401, UNAUTHENTICATED)
    old = await stranger.post(
        "/v1/sessions",
        {"login": user.email, "password": PASSWORD, "device_id": user.device_id, "device_name": "W"},
    )
    error_shape(old, 401, UNAUTHENTICATED)
    new = await stranger.post(
        "/v1/sessions",
        {"login": user.email, "password": NEW_PASSWORD, "device_id": user.device_id, "device_name": "W"},
    )
    assert new.status == 200
    assert (await stranger.get("/v1/devices")).status == 200


async def test_a_password_change_over_http_needs_csrf_and_the_current_password(surface: Surface) -> None:
    user = await surface.sign_up()
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}

    forged = await user.browser.post("/v1/users/me/password:change", change, csrf=False)
    assert forged.status == 403
    wrong = await user.browser.post(
        "/v1/users/me/password:change", {"current_password": "not it at all 1", "new_password": NEW_PASSWORD}
    )
    error_shape(wrong, 400, INVALID_ARGUMENT)
    assert wrong.reason == "CURRENT_PASSWORD_WRONG" and wrong.violated_fields == ["current_password"]
    assert (await user.browser.get("/v1/devices")).status == 200  # refusals changed nothing

    changed = await user.browser.post("/v1/users/me/password:change", change)

    assert changed.status == 200 and changed.json == {"sessions_revoked": 1}
    error_shape(await user.browser.get("/v1/devices"), 401, UNAUTHENTICATED)
    again = surface.browser()
    login = await again.post(
        "/v1/sessions",
        {"login": user.email, "password": NEW_PASSWORD, "device_id": user.device_id, "device_name": "W"},
    )
    assert login.status == 200
