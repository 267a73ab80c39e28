"""Behind a reverse proxy, on loopback: PENPAY_TRUSTED_PROXIES means the same for the HTTP bridge,
the gRPC API's per-IP rate limits and the M-Pesa callback allow-list.

Real sockets on distinct loopback addresses: clients connect from 127.0.0.9, 127.0.0.10, ...; the
test's reverse proxy (a small aiohttp server on 127.0.0.2) reaches its upstream from 127.0.0.3,
appending the address it saw to X-Forwarded-For as nginx's $proxy_add_x_forwarded_for does; the
bridge reaches the API from 127.0.0.1. Trusted: the proxy (by the bridge and the callback server)
and the bridge (by the API).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from domain.shared.clock import FixedClock
from mpesa_adapter.callback_server import CallbackServer
from mpesa_adapter.config import CallbackServerConfig
from penpay.bootstrap import callback_inbox
from penpay_api.http import BridgeConfig, CookiePolicy, ForwardingPolicy
from security.proxies import TrustedProxies
from tests.api.conftest import PASSWORD, Gateway, unique_email, unique_phone
from tests.public_surface.conftest import serve_surface

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

PROXY, PROXY_EGRESS = "127.0.0.2", "127.0.0.3"
ALICE, BOB, MALLORY = "127.0.0.9", "127.0.0.10", "127.0.0.11"
SAFARICOM = "127.0.0.20"  # stands in for Safaricom's published callback range
REGISTER_PER_IP = 10  # application/identity/rate_limits.py: "register" allows 10 an hour per IP
CALLBACK_SECRET = "s" * 32


def client(source: str) -> aiohttp.ClientSession:
    """An HTTP client whose connections come from `source` (any 127/8 address is loopback)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0), force_close=True))


@asynccontextmanager
async def reverse_proxy(upstream: str) -> AsyncIterator[str]:
    """A reverse proxy on PROXY: forwards everything to `upstream` from PROXY_EGRESS, appending the
    peer it saw to X-Forwarded-For. Returns its base URL."""
    async with client(PROXY_EGRESS) as egress:

        async def forward(request: web.Request) -> web.StreamResponse:
            headers = {
                k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
            }
            chain = ", ".join(request.headers.getall("X-Forwarded-For", ()))
            headers["X-Forwarded-For"] = f"{chain}, {request.remote}" if chain else str(request.remote)
            async with egress.request(
                request.method, upstream + request.path_qs, headers=headers, data=await request.read()
            ) as answer:
                body = await answer.read()
                kept = {
                    k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "set-cookie")
                }
                return web.Response(status=answer.status, body=body, headers=kept)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, PROXY, 0)
        await site.start()
        try:
            yield f"http://{PROXY}:{runner.addresses[0][1]}"
        finally:
            await runner.cleanup()


async def register(session: aiohttp.ClientSession, base: str, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    body = {"email": unique_email(), "phone_number": unique_phone(), "password": PASSWORD}
    async with session.post(f"{base}/v1/users", json=body, headers=headers) as response:
        return response.status


async def test_per_ip_limits_count_the_client_behind_the_proxy_not_the_proxy_nor_a_forged_header(
    database_url: str, clock: FixedClock, gateway: Gateway
) -> None:
    bridge_config = BridgeConfig(
        cookie_policy=CookiePolicy(secure=True),
        forwarding=ForwardingPolicy(TrustedProxies.parse(PROXY_EGRESS)),
    )
    async with serve_surface(
        database_url,
        clock,
        gateway,
        settings_update={"trusted_proxies": f"127.0.0.1,{PROXY_EGRESS}"},
        bridge_config=bridge_config,
    ) as surface:
        async with reverse_proxy(surface.base_url) as proxied, client(ALICE) as alice, client(BOB) as bob:
            # Alice, through the proxy, writes a new X-Forwarded-For each time: still one bucket, hers.
            for _ in range(REGISTER_PER_IP):
                assert await register(alice, proxied, f"198.51.100.{secrets.randbelow(250)}") == 200
            assert await register(alice, proxied, "203.0.113.77") == 429
            # Bob shares the proxy (and, before, the bridge's address): he is not locked out with her.
            assert await register(bob, proxied) == 200

        # Straight to the bridge (not from the proxy): a forged X-Forwarded-For naming Bob is ignored,
        # so Mallory neither spends Bob's allowance nor escapes her own.
        async with client(MALLORY) as mallory:
            statuses = [await register(mallory, surface.base_url, BOB) for _ in range(REGISTER_PER_IP + 1)]
        assert statuses == [200] * REGISTER_PER_IP + [429]
        async with reverse_proxy(surface.base_url) as proxied, client(BOB) as bob:
            assert await register(bob, proxied) == 200  # Bob's bucket holds 2 of 10


async def test_the_callback_allow_list_believes_forwarded_for_only_from_the_proxy(
    database_url: str, clock: FixedClock, gateway: Gateway
) -> None:
    async with serve_surface(database_url, clock, gateway) as surface:
        config = CallbackServerConfig.from_strings(
            CALLBACK_SECRET, allowed_ips=SAFARICOM, trusted_proxies=PROXY_EGRESS
        )
        server = CallbackServer(config, callback_inbox(surface.core), clock=clock)
        await server.start()
        path = f"/payments/stk/{CALLBACK_SECRET}"
        try:

            async def post(session: aiohttp.ClientSession, base: str, headers: dict[str, str]) -> int:
                # "{}" is malformed: a caller the allow-list lets in gets 400, one it keeps out 403
                async with session.post(base + path, data=b"{}", headers=headers) as response:
                    return response.status

            async with reverse_proxy(server.base_url) as proxied:
                async with client(SAFARICOM) as safaricom, client(MALLORY) as mallory:
                    assert await post(safaricom, proxied, {}) == 400  # allowed, through the proxy
                    assert await post(mallory, proxied, {"X-Forwarded-For": SAFARICOM}) == 403
                    assert await post(safaricom, server.base_url, {}) == 400  # allowed, direct
                    assert await post(mallory, server.base_url, {"X-Forwarded-For": SAFARICOM}) == 403
                    # an over-large header: 431 problem JSON, the path secret and header not echoed
                    async with safaricom.post(
                        server.base_url + path, data=b"{}", headers={"X-Big": "b" * 20_000}
                    ) as response:
                        assert response.status == 431
                        problem = await response.json()
                        assert problem["status"] == 431 and "bbbb" not in json.dumps(problem)
        finally:
            await server.stop()
