"""Deriv's OAuth binding through the real HTTP bridge in front of the real API, the gateway's REST
transport and the REST simulator: the binding is tied to the browser that started it. Deriv's redirect
arriving in another browser (someone the user sent their consent link to) is refused before the code
is spent and binds nothing; the browser that started binds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import aiohttp
import grpc
import pytest
from sqlalchemy import select

from deriv_gateway.config import GatewayConfig
from deriv_gateway.server import GatewayServer
from deriv_gateway.simulator import DEFAULT_AGENT_TOKEN, DerivSimulator, SimulatorConfig
from deriv_gateway.simulator.rest import DerivRestSimulator, RestServerConfig
from domain.shared.clock import FixedClock
from persistence.tables import audit_logs, audit_pending, deriv_accounts
from tests.api.conftest import Gateway

from .conftest import Browser, Surface, User, serve_surface

pytestmark = pytest.mark.integration
REDIRECT = "https://penpay.example/v1/deriv_account/oauth/callback"
CALLBACK = "/v1/deriv_account/oauth/callback"
NONCE_COOKIE = "penpay_deriv_oauth"
REFUSED = "DerivOAuthCallbackRefused"


@dataclass
class World:
    surface: Surface
    sim: DerivRestSimulator

    async def start(self, user: User) -> str:
        """oauth:start in the user's browser: the authorize URL (the nonce goes to a cookie)."""
        started = await user.browser.post("/v1/deriv_account/oauth:start")
        assert started.status == 200, started.json
        return str(started.json["authorize_url"])

    async def consent(self, authorize_url: str, login: str = "alice_w") -> dict[str, str]:
        """Deriv's consent page (whoever opens the link consents as `login`): the redirect's query."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{authorize_url}&sim_login={login}", allow_redirects=False) as response,
        ):
            assert response.status == 302, await response.text()
            location = response.headers["Location"]
        assert location.startswith(REDIRECT)
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    async def bound(self) -> list[str]:
        async with self.surface.core.engine.connect() as connection:
            return list((await connection.execute(select(deriv_accounts.c.deriv_login_id))).scalars())

    async def refusals(self) -> int:
        """DerivOAuthCallbackRefused audit records (pending or sealed, each counted once)."""
        async with self.surface.core.engine.connect() as connection:
            pending = set(
                (
                    await connection.execute(
                        select(audit_pending.c.id).where(audit_pending.c.action == REFUSED)
                    )
                ).scalars()
            )
            sealed = (
                await connection.execute(
                    select(audit_logs.c.pending_id).where(audit_logs.c.action == REFUSED)
                )
            ).scalars()
            return len(pending | set(sealed))


@pytest.fixture
async def world(database_url: str, journal_url: str, clock: FixedClock) -> AsyncIterator[World]:
    v3 = DerivSimulator(SimulatorConfig(port=0, control_port=None, seed=3))
    await v3.start()
    sim = DerivRestSimulator(v3, RestServerConfig(port=0))
    await sim.start()
    server = GatewayServer(
        GatewayConfig(
            ws_url=v3.url(app_id=None),
            agent_token=DEFAULT_AGENT_TOKEN,
            grpc_addr="127.0.0.1:0",
            database_url=journal_url,
            request_timeout=5.0,
            rest_base_url=sim.base_url,
            rest_app_id="app-sim-1",
            rest_agent_token="sim-rest-agent-pat",
        )
    )
    await server.start()
    await server.wait_serving(10)
    channel = grpc.aio.insecure_channel(server.address)
    settings = {
        "deriv_rest_app_id": "app-sim-1",
        "deriv_rest_redirect_uri": REDIRECT,
        "deriv_rest_oauth_url": sim.base_url,
    }
    try:
        async with serve_surface(
            database_url, clock, Gateway(v3, server, channel), settings_update=settings
        ) as surface:
            yield World(surface, sim)
    finally:
        await channel.close()
        await server.stop(grace=0.2)
        await sim.stop()
        await v3.stop()


async def test_the_callback_binds_only_in_the_browser_that_started(world: World) -> None:
    surface = world.surface
    user = await surface.sign_up()
    started = await user.browser.post("/v1/deriv_account/oauth:start")
    assert started.status == 200, started.json
    # The nonce is in a cookie a script cannot read and Deriv's top-level redirect brings back.
    assert "browser_nonce" not in started.json
    morsel = started.set_cookies[NONCE_COOKIE]
    assert morsel.value and morsel["httponly"] is True and morsel["secure"] is True
    assert morsel["samesite"] == "Lax" and morsel["path"] == "/v1/deriv_account/oauth"
    assert morsel["max-age"] == "600"
    nonce = morsel.value

    # The user sends the consent link to someone else, who consents in their own browser.
    redirect = await world.consent(str(started.json["authorize_url"]))
    someone = Browser(surface.http)
    refused = await someone.get(CALLBACK, params=redirect)
    assert refused.status == 403, refused.json
    assert refused.reason == "DERIV_OAUTH_BROWSER_MISMATCH"
    assert refused.violated_fields == ["browser_nonce"]
    # ... also when the link carries the user's nonce in its query (only the cookie counts),
    forged = await someone.get(CALLBACK, params={**redirect, "browser_nonce": nonce})
    assert forged.status == 403 and forged.reason == "DERIV_OAUTH_BROWSER_MISMATCH"
    # ... and from a browser holding its own binding's nonce.
    other = await surface.sign_up()
    await world.start(other)
    assert NONCE_COOKIE in other.browser.cookies
    crossed = await other.browser.get(CALLBACK, params=redirect)
    assert crossed.status == 403 and crossed.reason == "DERIV_OAUTH_BROWSER_MISMATCH"
    assert nonce not in crossed.raw.decode()
    assert await world.bound() == [] and await world.refusals() == 3
    assert not [t for t in world.sim.state.tokens.values() if t.kind == "oauth"]  # code not spent

    # The browser that started binds (the refused redirects did not spend the code), once.
    done = await user.browser.get(CALLBACK, params=redirect)
    assert done.status == 200, done.json
    assert done.json["deriv_login_id"] == "@alice_w"
    assert done.set_cookies[NONCE_COOKIE]["max-age"] == "0" and NONCE_COOKIE not in user.browser.cookies
    assert await world.bound() == ["@alice_w"]


async def test_grpc_callers_bring_the_nonce_back(world: World) -> None:
    """The same rule without the bridge: CompleteDerivOAuth needs the nonce StartDerivOAuth gave."""
    from penpay.auth.v1 import auth_pb2, auth_pb2_grpc

    surface = world.surface
    user = await surface.sign_up()
    token = user.browser.cookies["penpay_access"]
    async with grpc.aio.insecure_channel(surface.api.server.address) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        started = await auth.StartDerivOAuth(
            auth_pb2.StartDerivOAuthRequest(), metadata=(("authorization", f"Bearer {token}"),)
        )
        assert started.browser_nonce
        redirect = await world.consent(started.authorize_url, login="brian_o")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await auth.CompleteDerivOAuth(
                auth_pb2.CompleteDerivOAuthRequest(code=redirect["code"], state=redirect["state"])
            )
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        done = await auth.CompleteDerivOAuth(
            auth_pb2.CompleteDerivOAuthRequest(
                code=redirect["code"], state=redirect["state"], browser_nonce=started.browser_nonce
            )
        )
    assert done.deriv_login_id == "@brian_o"
