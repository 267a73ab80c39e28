"""Header -> metadata rules, Grpc-Timeout, and the cookie / CSRF policy as pure functions."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from penpay_api.http import cookies
from penpay_api.http.metadata import (
    ForwardingPolicy,
    HeaderError,
    parse_grpc_timeout,
    request_id_of,
    request_metadata,
    response_headers,
)
from security.proxies import TrustedProxies
from tests.http_bridge.conftest import LOGIN, LOGOUT, REFRESH, TEST_POLICY

pytestmark = pytest.mark.unit


def _metadata(headers: dict[str, str], **kwargs: Any) -> dict[str, str | bytes]:
    multi = CIMultiDict(headers)
    options: dict[str, Any] = {
        "authorization": multi.get("Authorization"),
        "request_id": "r1",
        "peer": "10.0.0.9",
    }
    options.update(kwargs)
    return dict(request_metadata(multi, multi.items(), **options))


def test_forwarded_headers_and_grpc_metadata_prefix() -> None:
    seen = _metadata(
        {
            "Authorization": "Bearer t",
            "Idempotency-Key": "k1",
            "Host": "api.example",
            "Grpc-Metadata-Tenant": "ke",
            "Grpc-Metadata-Trace-Bin": base64.b64encode(b"\x01\x02").decode(),
            "Grpc-Metadata-Broken-Bin": "***",
            "Grpc-Metadata-Grpc-Internal": "x",
            "Grpc-Metadata-Content-Type": "x",
            "Grpc-Metadata-Idempotency-Key": "spoof",
            "Grpc-Metadata-Bad Key": "x",
            "Grpc-Metadata-Note": "caf\u00e9",  # not printable ASCII: dropped
            "Accept": "application/json",
        }
    )
    assert seen == {
        "authorization": "Bearer t",
        "idempotency-key": "k1",
        "x-request-id": "r1",
        "x-forwarded-for": "10.0.0.9",
        "x-forwarded-host": "api.example",
        "tenant": "ke",
        "trace-bin": b"\x01\x02",
    }


def test_the_client_forwarded_for_is_kept_only_when_trusted() -> None:
    headers = {"X-Forwarded-For": "198.51.100.1"}
    assert _metadata(headers)["x-forwarded-for"] == "10.0.0.9"
    trusted = _metadata(headers, policy=ForwardingPolicy(TrustedProxies.parse("10.0.0.0/8")))
    assert trusted["x-forwarded-for"] == "198.51.100.1"
    other = _metadata(headers, policy=ForwardingPolicy(TrustedProxies.parse("192.0.2.1")))
    assert other["x-forwarded-for"] == "10.0.0.9"  # the peer is not a trusted proxy


@pytest.mark.parametrize("header", ["Authorization", "Idempotency-Key"])
def test_unforwardable_credentials_are_header_errors(header: str) -> None:
    with pytest.raises(HeaderError):
        _metadata({header: "caf\u00e9"})
    with pytest.raises(HeaderError):
        _metadata({header: "line\x01break"})


def test_request_ids() -> None:
    assert request_id_of({"X-Request-Id": "abc-1"}) == "abc-1"
    assert len(request_id_of({})) == 32
    assert request_id_of({"X-Request-Id": "x" * 129}) != "x" * 129


def test_response_headers_from_initial_metadata() -> None:
    headers = response_headers([("x-a", "1"), ("x-a", "2"), ("x-http-code", "201"), ("k-bin", b"\xff")])
    assert headers == {"Grpc-Metadata-x-a": "1, 2", "Grpc-Metadata-k-bin": "/w=="}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5S", 5.0),
        ("100m", 0.1),
        ("2M", 120.0),
        ("1H", 3600.0),
        ("10u", 1e-5),
        (None, None),
        ("5", None),
        ("S", None),
        ("5X", None),
        ("123456789S", None),
        ("-5S", None),
    ],
)
def test_grpc_timeout(value: str | None, seconds: float | None) -> None:
    assert parse_grpc_timeout(value) == (pytest.approx(seconds) if seconds is not None else None)


def test_credentials_from_cookies(echo: Any) -> None:
    pb = echo.pb
    jar = {"penpay_access": "acc", "penpay_refresh": "ref", "penpay_csrf": "c"}
    plain = cookies.resolve_credentials(TEST_POLICY, "x.Y/Get", {}, jar, pb.WhoamiRequest())
    assert plain == cookies.CookieCredentials("Bearer acc", from_cookie=True)
    explicit = cookies.resolve_credentials(
        TEST_POLICY, "x.Y/Get", {"Authorization": "Bearer h"}, jar, pb.WhoamiRequest()
    )
    assert explicit == cookies.CookieCredentials("Bearer h", from_cookie=False)
    login = cookies.resolve_credentials(TEST_POLICY, LOGIN, {}, jar, pb.LoginRequest())
    assert login == cookies.CookieCredentials(None, from_cookie=False)
    refresh_request = pb.RefreshRequest()
    refresh = cookies.resolve_credentials(TEST_POLICY, REFRESH, {}, jar, refresh_request)
    assert refresh == cookies.CookieCredentials(None, from_cookie=True)
    assert refresh_request.refresh_token == "ref"
    given = pb.LogoutRequest(refresh_token="mine")
    logout = cookies.resolve_credentials(TEST_POLICY, LOGOUT, {}, {"penpay_refresh": "ref"}, given)
    assert given.refresh_token == "mine" and logout == cookies.CookieCredentials(None, from_cookie=False)
    disabled = cookies.CookiePolicy(enabled=False)
    assert cookies.resolve_credentials(disabled, "x.Y/Get", {}, jar, pb.WhoamiRequest()).authorization is None


def test_csrf_rules() -> None:
    by_cookie = cookies.CookieCredentials("Bearer a", from_cookie=True)
    by_header = cookies.CookieCredentials("Bearer a", from_cookie=False)
    assert cookies.csrf_required(TEST_POLICY, "POST", by_cookie)
    assert cookies.csrf_required(TEST_POLICY, "delete", by_cookie)
    assert not cookies.csrf_required(TEST_POLICY, "GET", by_cookie)
    assert not cookies.csrf_required(TEST_POLICY, "POST", by_header)
    jar = {"penpay_csrf": "token-1"}
    assert cookies.csrf_valid(TEST_POLICY, {"X-CSRF-Token": "token-1"}, jar)
    assert not cookies.csrf_valid(TEST_POLICY, {"X-CSRF-Token": "token-2"}, jar)
    assert not cookies.csrf_valid(TEST_POLICY, {"X-CSRF-Token": ""}, {"penpay_csrf": ""})
    assert not cookies.csrf_valid(TEST_POLICY, {}, jar)


def test_session_cookies_need_both_tokens_and_take_max_age(echo: Any) -> None:
    pb = echo.pb
    response = web.Response()
    assert not cookies.issue_session_cookies(TEST_POLICY, response, pb.LoginResponse(access_token="a"))
    assert not cookies.issue_session_cookies(TEST_POLICY, response, pb.WhoamiResponse())
    assert len(response.cookies) == 0
    assert cookies.issue_session_cookies(
        TEST_POLICY, response, pb.LoginResponse(access_token="a", refresh_token="r")
    )
    assert "Max-Age" not in response.cookies["penpay_access"].OutputString()  # no expires_in: session cookie
    insecure = cookies.CookiePolicy(secure=False)
    response = web.Response()
    cookies.issue_session_cookies(
        insecure, response, pb.LoginResponse(access_token="a", refresh_token="r", expires_in=60)
    )
    assert "Secure" not in response.cookies["penpay_access"].OutputString()
    assert response.cookies["penpay_access"]["max-age"] == "60"
