"""StartDerivOAuth / CompleteDerivOAuth over gRPC, wired by build_api from PENPAY_DERIV_REST_* settings:
a user binds a new-API account through Deriv's consent page (the REST simulator), the redirect is
answered without a session, and bad redirects are refused with a clear reason, changing nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import grpc
import pytest

from deriv_gateway.config import GatewayConfig
from deriv_gateway.server import GatewayServer
from deriv_gateway.simulator import DEFAULT_AGENT_TOKEN, DerivSimulator, SimulatorConfig
from deriv_gateway.simulator.rest import DerivRestSimulator, RestServerConfig
from penpay.auth.v1 import auth_pb2

from .conftest import Gateway, StartApi, details_of

pytestmark = pytest.mark.integration
REDIRECT = "https://penpay.example/v1/deriv_account/oauth/callback"


@pytest.fixture
async def rest_gateway(journal_url: str) -> AsyncIterator[tuple[Gateway, DerivRestSimulator]]:
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
    yield Gateway(v3, server, channel), sim
    await channel.close()
    await server.stop(grace=0.2)
    await sim.stop()
    await v3.stop()


async def test_binding_over_the_api_and_refusals(
    start_api: StartApi, rest_gateway: tuple[Gateway, DerivRestSimulator]
) -> None:
    gateway, sim = rest_gateway
    api = await start_api(
        gateway=gateway,
        settings={
            "deriv_rest_app_id": "app-sim-1",
            "deriv_rest_redirect_uri": REDIRECT,
            "deriv_rest_oauth_url": sim.base_url,
        },
    )
    account = await api.new_account()
    with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
        await api.auth.StartDerivOAuth(auth_pb2.StartDerivOAuthRequest())
    assert unauthenticated.value.code() is grpc.StatusCode.UNAUTHENTICATED

    started = await api.auth.StartDerivOAuth(auth_pb2.StartDerivOAuthRequest(), metadata=account.auth)
    query = parse_qs(urlsplit(started.authorize_url).query)
    assert query["client_id"] == ["app-sim-1"] and query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [REDIRECT] and set(query["scope"][0].split()) == {
        "payment",
        "account_manage",
    }
    async with (
        aiohttp.ClientSession() as http,
        http.get(started.authorize_url, allow_redirects=False) as response,
    ):
        back = parse_qs(urlsplit(response.headers["Location"]).query)
    code, state = back["code"][0], back["state"][0]

    # Deriv's refusals and foreign states: clear reasons, nothing bound.
    for request, status, reason in (
        (
            auth_pb2.CompleteDerivOAuthRequest(state=state, error="access_denied"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "DERIV_BINDING_REFUSED",
        ),
        (
            auth_pb2.CompleteDerivOAuthRequest(state="forged", code=code),
            grpc.StatusCode.INVALID_ARGUMENT,
            "DERIV_OAUTH_STATE_INVALID",
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await api.auth.CompleteDerivOAuth(request)
        assert refused.value.code() is status
        assert details_of(refused.value).error_info.reason == reason

    # Without the nonce the starting browser holds, the redirect binds nothing.
    with pytest.raises(grpc.aio.AioRpcError) as elsewhere:
        await api.auth.CompleteDerivOAuth(auth_pb2.CompleteDerivOAuthRequest(code=code, state=state))
    assert elsewhere.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert details_of(elsewhere.value).error_info.reason == "DERIV_OAUTH_BROWSER_MISMATCH"

    # The redirect itself carries no session: the sealed state names the user.
    nonce = started.browser_nonce
    done = await api.auth.CompleteDerivOAuth(
        auth_pb2.CompleteDerivOAuthRequest(code=code, state=state, browser_nonce=nonce)
    )
    assert done.deriv_login_id == "@alice_w"
    with pytest.raises(grpc.aio.AioRpcError) as replayed:
        await api.auth.CompleteDerivOAuth(
            auth_pb2.CompleteDerivOAuthRequest(code=code, state=state, browser_nonce=nonce)
        )
    assert details_of(replayed.value).error_info.reason == "DERIV_REBIND_REQUIRED"
    assert code not in (replayed.value.details() or "")
