"""The public surface as a frontend meets it: the real PenPay gRPC API (penpay.wiring.api.build_api
over MariaDB or SQLite, built as tests/api does) with the real HTTP bridge in front of it, configured as
`penpay http` configures it (Secure cookies, no trusted X-Forwarded-For, 30 s deadline), every service
`penpay up` bridges outside production, all on 127.0.0.1:0 over real sockets.

Deriv binding and the KYC refresh before money moves go through the real Deriv gateway in front of the
Deriv simulator (tests/api's `gateway` fixture). The bus is the embedded stack's in-process bus.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.cookies import Morsel, SimpleCookie
from typing import Any

import aiohttp
import pytest
from sqlalchemy import Table, func, select

from deriv_gateway.accounts_client import GatewayDerivAccounts
from domain.shared.clock import FixedClock
from penpay import bootstrap
from penpay.settings import Settings
from penpay.wiring.api import Api, build_api
from penpay_api.auth import RoleAwareAccessTokens
from penpay_api.http import BridgeConfig, CookiePolicy, ForwardingPolicy, build_app, discover_services
from penpay_api.http import start_server as start_bridge
from penpay_api.http.discovery import DEFAULT_PACKAGES
from security.notify import DevelopmentNotifier
from security.passwords import FAST_FOR_TESTS, Argon2idHasher
from security.rate_limit import InProcessRateLimiter
from tests.api import conftest as api_conftest
from tests.api.conftest import (
    CLIENT_TOKEN,
    PASSWORD,
    SIGNING_KEY,
    Gateway,
    unique_email,
    unique_phone,
)
from tests.floats import fund_test_floats
from workers.memory_bus import InProcessBus

# tests/api's fixtures, reused as they are: the Deriv simulator and gateway, the FixedClock.
clock = api_conftest.clock
gateway = api_conftest.gateway
journal_url = api_conftest.journal_url

ACCESS, REFRESH, CSRF = "penpay_access", "penpay_refresh", "penpay_csrf"
BRIDGED_PACKAGES = (*DEFAULT_PACKAGES, "penpay.dev.v1")  # what `penpay up` bridges outside production


def penpay_http_config() -> BridgeConfig:
    """BridgeConfig exactly as penpay/commands/http.py builds it from its defaults."""
    return BridgeConfig(
        cookie_policy=CookiePolicy(secure=True),
        forwarding=ForwardingPolicy(),  # no trusted proxy
        default_timeout=30.0,
    )


# --- an HTTP client that keeps cookies as a browser on the real (https) origin would -----------------


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    raw: bytes
    set_cookies: dict[str, Morsel[str]]

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    def detail(self, type_suffix: str) -> dict[str, Any]:
        """The one error detail whose @type ends with `type_suffix` (e.g. "ErrorInfo")."""
        found = [d for d in self.json["details"] if d["@type"].endswith("." + type_suffix)]
        assert len(found) == 1, f"expected one {type_suffix} in {self.json}"
        detail: dict[str, Any] = found[0]
        return detail

    @property
    def reason(self) -> str:
        return str(self.detail("ErrorInfo")["reason"])

    @property
    def violated_fields(self) -> list[str]:
        return [v["field"] for v in self.detail("BadRequest")["field_violations"]]


def _parse_set_cookies(response: aiohttp.ClientResponse) -> dict[str, Morsel[str]]:
    found: dict[str, Morsel[str]] = {}
    for header in response.headers.getall("Set-Cookie", []):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        found.update(jar)
    return found


@dataclass
class Browser:
    """One client of the bridge: sends the cookies it was given back (Secure ones included: the
    bridge sits behind TLS in production; here the socket is plain loopback), drops cleared ones."""

    http: aiohttp.ClientSession
    cookies: dict[str, str] = field(default_factory=dict)

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        csrf: bool = True,
        send_cookies: bool = True,
    ) -> Reply:
        sent = dict(headers or {})
        if send_cookies and self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            if csrf and CSRF in self.cookies and method not in ("GET", "HEAD"):
                sent.setdefault("X-CSRF-Token", self.cookies[CSRF])
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        async with self.http.request(method, path, data=data, params=params, headers=sent) as response:
            reply = Reply(
                response.status, response.headers, await response.read(), _parse_set_cookies(response)
            )
        for name, morsel in reply.set_cookies.items():
            if morsel["max-age"] == "0":
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value
        return reply

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return await self.call("POST", path, body={} if body is None else body, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("DELETE", path, **kwargs)


@dataclass
class User:
    """A user signed in through the bridge (the browser holds the session cookies)."""

    browser: Browser
    user_id: str
    email: str
    phone: str
    device_id: str


@dataclass
class Surface:
    api: Api
    core: bootstrap.Core
    clock: FixedClock
    tokens: RoleAwareAccessTokens
    notifier: DevelopmentNotifier
    gateway: Gateway
    bus: InProcessBus
    base_url: str
    http: aiohttp.ClientSession
    database_url: str

    def browser(self) -> Browser:
        return Browser(self.http)

    def operator(self, name: str = "alice", roles: tuple[str, ...] = ("operator",)) -> Browser:
        """A non-browser staff client: bearer token, no cookies."""
        token, _ = self.tokens.issue_operator_token(operator=name, now=self.clock.now(), roles=roles)
        return _HeaderBrowser(self.http, headers={"Authorization": f"Bearer {token}"})

    async def count(self, table: Table) -> int:
        async with self.core.engine.connect() as connection:
            return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())

    async def sign_up(self, *, device_id: str | None = None) -> User:
        """Register and log in over HTTP, as a frontend does."""
        browser = self.browser()
        email, phone = unique_email(), unique_phone()
        registered = await browser.post(
            "/v1/users", {"email": email, "phone_number": phone, "password": PASSWORD}
        )
        assert registered.status == 200, registered.json
        device = device_id or f"device-{secrets.token_hex(6)}"
        login = await browser.post(
            "/v1/sessions", {"login": email, "password": PASSWORD, "device_id": device, "device_name": "Web"}
        )
        assert login.status == 200, login.json
        return User(browser, registered.json["user_id"], email, phone, device)

    async def latest_code(self, user: User, channel: str) -> str:
        """The code, as `penpay demo` reads it: the dev-only sent_messages endpoint."""
        reply = await user.browser.get("/v1/dev/sent_messages", params={"channel": channel})
        assert reply.status == 200 and reply.json["messages"], reply.json
        return str(reply.json["messages"][0]["body"].split("code is ")[1][:6])

    async def verify_phone(self, user: User) -> None:
        asked = await user.browser.post("/v1/users/me/phone:requestVerification")
        assert asked.status == 200, asked.json
        code = await self.latest_code(user, "sms")
        verified = await user.browser.post("/v1/phone:verify", {"phone_number": user.phone, "code": code})
        assert verified.status == 200, verified.json

    async def payer(self) -> User:
        """Signed up, phone verified, Deriv account CR90000001 bound: money may move."""
        user = await self.sign_up()
        await self.verify_phone(user)
        bound = await user.browser.post("/v1/deriv_account:bind", {"deriv_token": CLIENT_TOKEN})
        assert bound.status == 200, bound.json
        return user


@dataclass
class _HeaderBrowser(Browser):
    headers: dict[str, str] = field(default_factory=dict)

    async def call(self, method: str, path: str, **kwargs: Any) -> Reply:
        kwargs["headers"] = {**self.headers, **(kwargs.get("headers") or {})}
        return await super().call(method, path, **kwargs)


@asynccontextmanager
async def serve_surface(
    database_url: str,
    clock: FixedClock,
    gateway: Gateway,
    *,
    settings_update: Mapping[str, Any] | None = None,
    bridge_config: BridgeConfig | None = None,
    **overrides: Any,
) -> AsyncIterator[Surface]:
    """The API (build_api, as tests/api/conftest.py's start_api builds it) and the bridge in front."""
    settings = Settings(
        app_env="testing",
        database_url=database_url,
        redis_url=None,
        grpc_addr="127.0.0.1:0",
        metrics_addr="127.0.0.1:0",
        gateway_addr=gateway.server.address,
    ).model_copy(update=dict(settings_update or {}))
    core = bootstrap.bootstrap(settings, clock=clock, pool_size=5)
    await fund_test_floats(core)  # payments are refused when their float cannot pay them out
    hasher = Argon2idHasher(FAST_FOR_TESTS)
    tokens = RoleAwareAccessTokens([SIGNING_KEY])
    notifier = DevelopmentNotifier()
    bus = InProcessBus()
    kwargs: dict[str, Any] = {
        "tokens": tokens,
        "hasher": hasher,
        "notifier": notifier,
        "rate_limiter": InProcessRateLimiter(),
        "deriv": GatewayDerivAccounts(gateway.channel),
        "bus": bus,
        **overrides,
    }
    api = build_api(core, **kwargs)
    await api.server.start()
    runner = None
    try:
        app = build_app(
            discover_services(BRIDGED_PACKAGES),
            api.server.address,
            config=bridge_config or penpay_http_config(),
        )
        runner, port = await start_bridge(app, "127.0.0.1", 0)
        base_url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(base_url=base_url, cookie_jar=aiohttp.DummyCookieJar()) as http:
            yield Surface(api, core, clock, tokens, notifier, gateway, bus, base_url, http, database_url)
    finally:
        if runner is not None:
            await runner.cleanup()
        await api.close()
        await bus.close()
        await core.close()
        hasher.close()


@pytest.fixture
async def surface(database_url: str, clock: FixedClock, gateway: Gateway) -> AsyncIterator[Surface]:
    """The public surface on MariaDB, then on SQLite."""
    async with serve_surface(database_url, clock, gateway) as served:
        yield served


def error_shape(reply: Reply, http_status: int, grpc_code: int) -> None:
    """grpc-gateway's error body (plus the RFC 9457 fields) with the status the mapping gives."""
    body = reply.json
    assert reply.status == http_status, body
    assert reply.headers["Content-Type"].startswith("application/json")
    assert body["code"] == grpc_code and body["status"] == http_status
    assert body["message"] and body["detail"] == body["message"]
    assert isinstance(body["details"], list) and body["details"]
    info = reply.detail("ErrorInfo")
    assert info["domain"] == "penpay.io" and info["reason"]
