"""penpay.auth.v1.AuthService through the HTTP bridge: every RPC once succeeding and once refused, with
grpc-gateway's status mapping and the JSON error body (code, message, details with ErrorInfo and
BadRequest field violations)."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy import select

from application.identity.rate_limits import DEFAULT_RULES
from deriv_gateway.accounts_client import GatewayDerivAccounts
from domain.shared.clock import FixedClock
from persistence.tables import deriv_accounts, user_devices, users
from tests.api.conftest import (
    CLIENT_TOKEN,
    PASSWORD,
    UNREACHABLE_GATEWAY,
    Gateway,
    unique_email,
    unique_phone,
)

from .conftest import Surface, error_shape, serve_surface

pytestmark = pytest.mark.integration

INVALID_ARGUMENT, FAILED_PRECONDITION, NOT_FOUND, ALREADY_EXISTS = 3, 9, 5, 6
PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNAUTHENTICATED = 7, 8, 16


async def test_register_and_login(surface: Surface) -> None:
    browser = surface.browser()
    email, phone = unique_email(), unique_phone()
    registered = await browser.post(
        "/v1/users", {"email": email, "phone_number": phone, "password": PASSWORD}
    )
    assert registered.status == 200 and set(registered.json) == {"user_id"}

    taken = await browser.post(
        "/v1/users", {"email": email, "phone_number": unique_phone(), "password": PASSWORD}
    )
    error_shape(taken, 409, ALREADY_EXISTS)
    assert taken.reason == "ALREADY_REGISTERED"
    weak = await browser.post(
        "/v1/users", {"email": unique_email(), "phone_number": unique_phone(), "password": "short"}
    )
    error_shape(weak, 400, INVALID_ARGUMENT)
    assert weak.reason == "WEAK_PASSWORD" and weak.violated_fields == ["password"]
    assert b"short" not in weak.raw  # the password is not echoed

    login = await browser.post(
        "/v1/sessions",
        {"login": phone, "password": PASSWORD, "device_id": "web-device-01", "device_name": "W"},
    )
    assert login.status == 200
    assert login.json["user_id"] == registered.json["user_id"] and login.json["token_type"] == "Bearer"
    assert login.json["device_id"] == "web-device-01" and 0 < int(login.json["expires_in"]) <= 900

    wrong = await surface.browser().post(
        "/v1/sessions", {"login": email, "password": "wrong password 1", "device_id": "web-device-02"}
    )
    error_shape(wrong, 401, UNAUTHENTICATED)
    assert wrong.reason == "INVALID_CREDENTIALS" and wrong.set_cookies == {}


async def test_phone_verification(surface: Surface) -> None:
    user = await surface.sign_up()
    asked = await user.browser.post("/v1/users/me/phone:requestVerification")
    assert asked.status == 200 and asked.json == {"expires_in": 600}
    code = await surface.latest_code(user, "sms")

    wrong = await user.browser.post(
        "/v1/phone:verify", {"phone_number": user.phone, "code": "000000" if code != "000000" else "111111"}
    )
    error_shape(wrong, 400, INVALID_ARGUMENT)
    assert wrong.reason == "VERIFICATION_CODE_INVALID" and wrong.violated_fields == ["code"]
    verified = await surface.browser().post("/v1/phone:verify", {"phone_number": user.phone, "code": code})
    assert verified.status == 200 and verified.json == {}

    anonymous = await surface.browser().post("/v1/users/me/phone:requestVerification")
    error_shape(anonymous, 401, UNAUTHENTICATED)


async def test_email_verification(surface: Surface) -> None:
    user = await surface.sign_up()
    asked = await user.browser.post("/v1/users/me/email:requestVerification")
    assert asked.status == 200 and asked.json == {"expires_in": 600}
    code = await surface.latest_code(user, "email")
    verified = await surface.browser().post("/v1/email:verify", {"email": user.email, "code": code})
    assert verified.status == 200
    async with surface.core.engine.connect() as connection:
        flag = await connection.execute(select(users.c.email_verified).where(users.c.email == user.email))
        assert flag.scalar() is True

    unknown = await surface.browser().post("/v1/email:verify", {"email": unique_email(), "code": "123456"})
    error_shape(unknown, 400, INVALID_ARGUMENT)
    assert unknown.reason == "VERIFICATION_CODE_INVALID"  # as a wrong code: no account enumeration

    for _ in range(4):  # 5 code requests per phone per hour (one above)
        assert (await user.browser.post("/v1/users/me/email:requestVerification")).status == 200
    limited = await user.browser.post("/v1/users/me/email:requestVerification")
    error_shape(limited, 429, RESOURCE_EXHAUSTED)
    assert limited.reason == "RATE_LIMITED"
    delay = int(limited.detail("RetryInfo")["retry_delay"].rstrip("s"))
    assert delay > 0
    assert limited.headers["Retry-After"] == str(delay)


async def test_refresh_and_logout(surface: Surface) -> None:
    user = await surface.sign_up()
    first_refresh = user.browser.cookies["penpay_refresh"]
    refreshed = await user.browser.post("/v1/sessions:refresh")  # the refresh cookie fills refresh_token
    assert refreshed.status == 200
    assert "access_token" not in refreshed.json and "refresh_token" not in refreshed.json  # cookie request
    assert user.browser.cookies["penpay_refresh"] != first_refresh
    assert (await user.browser.get("/v1/devices")).status == 200  # a rotation keeps the session open

    reused = await surface.browser().post("/v1/sessions:refresh", {"refresh_token": first_refresh})
    error_shape(reused, 401, UNAUTHENTICATED)
    assert reused.reason == "REFRESH_TOKEN_REUSED"
    ended = await user.browser.get("/v1/devices")  # ... and the whole session ended with it
    assert ended.status == 401 and ended.reason == "SESSION_ENDED"

    other = await surface.sign_up()
    logged_out = await other.browser.post("/v1/sessions:logout")
    assert logged_out.status == 200 and logged_out.json == {}
    assert {n for n, m in logged_out.set_cookies.items() if m["max-age"] == "0"} == {
        "penpay_access",
        "penpay_refresh",
        "penpay_csrf",
    }
    assert other.browser.cookies == {}
    anonymous = await other.browser.post("/v1/sessions:logout", {"refresh_token": "whatever"})
    error_shape(anonymous, 401, UNAUTHENTICATED)


async def test_devices_listed_and_removed(surface: Surface) -> None:
    user = await surface.sign_up()
    second = surface.browser()
    assert (
        await second.post(
            "/v1/sessions",
            {"login": user.email, "password": PASSWORD, "device_id": "second-device-1", "device_name": "Tab"},
        )
    ).status == 200

    listed = await user.browser.get("/v1/devices")
    assert listed.status == 200
    devices = {d["device_id"]: d for d in listed.json["devices"]}
    assert set(devices) == {user.device_id, "second-device-1"}
    assert devices[user.device_id]["current"] is True and devices["second-device-1"]["current"] is False
    assert devices["second-device-1"]["name"] == "Tab" and devices["second-device-1"]["added_at"].endswith(
        "Z"
    )

    removed = await user.browser.delete("/v1/devices/second-device-1")
    assert removed.status == 200 and removed.json == {}
    async with surface.core.engine.connect() as connection:
        left = (await connection.execute(select(user_devices.c.device_id))).scalars().all()
    assert "second-device-1" not in left
    signed_out = await second.get("/v1/devices")  # its session ended with the device
    error_shape(signed_out, 401, UNAUTHENTICATED)

    unknown = await user.browser.delete("/v1/devices/no-such-device-1")
    error_shape(unknown, 404, NOT_FOUND)
    assert unknown.reason == "DEVICE_NOT_FOUND"
    operator = await surface.operator().get("/v1/devices")
    error_shape(operator, 403, PERMISSION_DENIED)
    assert operator.reason == "USER_TOKEN_REQUIRED"


async def test_bind_deriv_account(surface: Surface) -> None:
    user = await surface.sign_up()
    refused = await user.browser.post("/v1/deriv_account:bind", {"deriv_token": "not-a-real-token-42"})
    error_shape(refused, 400, FAILED_PRECONDITION)
    assert refused.reason == "DERIV_BINDING_REFUSED" and refused.violated_fields == ["deriv_token"]
    assert b"not-a-real-token-42" not in refused.raw

    bound = await user.browser.post("/v1/deriv_account:bind", {"deriv_token": CLIENT_TOKEN})
    assert bound.status == 200 and bound.json == {"deriv_login_id": "CR90000001", "kyc_acceptable": True}
    async with surface.core.engine.connect() as connection:
        assert (await connection.execute(select(deriv_accounts.c.deriv_login_id))).scalars().all() == [
            "CR90000001"
        ]


async def test_verifying_unknown_contacts_counts_against_the_rate_limit(surface: Surface) -> None:
    limits = {rule.subject: rule.limit for rule in DEFAULT_RULES["verification_confirm"]}
    browser = surface.browser()
    stranger = unique_phone()  # no account has it
    for _ in range(limits["phone"]):
        wrong = await browser.post("/v1/phone:verify", {"phone_number": stranger, "code": "123456"})
        assert wrong.status == 400 and wrong.reason == "VERIFICATION_CODE_INVALID"
    limited = await browser.post("/v1/phone:verify", {"phone_number": stranger, "code": "123456"})
    error_shape(limited, 429, RESOURCE_EXHAUSTED)
    assert limited.reason == "RATE_LIMITED"

    # Unknown email addresses (no phone to key on) are counted per client IP. The call its phone
    # window refused was counted in no window (the ip's included): the attempts made so far are
    # the phone's limit.
    used = limits["phone"]
    for _ in range(limits["ip"] - used):
        wrong = await browser.post("/v1/email:verify", {"email": unique_email(), "code": "123456"})
        assert wrong.status == 400 and wrong.reason == "VERIFICATION_CODE_INVALID"
    limited = await browser.post("/v1/email:verify", {"email": unique_email(), "code": "123456"})
    error_shape(limited, 429, RESOURCE_EXHAUSTED)


async def test_an_unreachable_upstream_is_503(sqlite_url: str, clock: FixedClock, gateway: Gateway) -> None:
    channel = grpc.aio.insecure_channel(UNREACHABLE_GATEWAY)
    async with serve_surface(sqlite_url, clock, gateway, deriv=GatewayDerivAccounts(channel)) as surface:
        user = await surface.sign_up()
        down = await user.browser.post("/v1/deriv_account:bind", {"deriv_token": CLIENT_TOKEN})
    await channel.close()
    error_shape(down, 503, 14)  # UNAVAILABLE
    assert down.reason == "UPSTREAM_UNAVAILABLE" and "127.0.0.1" not in down.json["message"]
