"""The public gRPC API as a client sees it: a real grpc.aio server on 127.0.0.1:0 built by
penpay.wiring.api.build_api over a real database (MariaDB and SQLite), real stubs over TCP.

Deriv binding goes through a real Deriv gateway (deriv_gateway.server) in front of the Deriv
simulator, when a test asks for `gateway`. Nothing here is a mock.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from deriv_gateway.accounts_client import GatewayDerivAccounts
from deriv_gateway.config import GatewayConfig
from deriv_gateway.server import GatewayServer
from deriv_gateway.simulator import DEFAULT_AGENT_TOKEN, DerivSimulator, RateLimitConfig, SimulatorConfig
from domain.shared.clock import FixedClock
from penpay import bootstrap
from penpay.auth.v1 import auth_pb2, auth_pb2_grpc
from penpay.dev.v1 import dev_pb2, dev_pb2_grpc
from penpay.ops.v1 import ops_pb2_grpc
from penpay.payments.v1 import payments_pb2_grpc
from penpay.settings import Settings
from penpay.wallet.v1 import wallet_pb2_grpc
from penpay.wiring.api import DEFAULT, Api, build_api
from penpay_api.auth import RoleAwareAccessTokens
from security.access_tokens import SigningKey
from security.notify import DevelopmentNotifier
from security.passwords import FAST_FOR_TESTS, Argon2idHasher
from security.rate_limit import InProcessRateLimiter
from tests import databases
from tests.clocks import the_processes_clock
from tests.floats import fund_test_floats

PASSWORD = "correct horse battery 9"
SIGNING_KEY = SigningKey.generate("api-test-k1")  # one per session: ~50 ms each
CLIENT_TOKEN = "sim-client1-token"  # CR90000001 in the simulator's default seed (KYC complete, Kenya)
UNREACHABLE_GATEWAY = "127.0.0.1:9"  # discard port: nothing answers gRPC there


def unique_email() -> str:
    return f"api{secrets.token_hex(5)}@example.co.ke"


def unique_phone() -> str:
    return f"+2547{secrets.randbelow(10**8):08d}"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Account:
    user_id: str
    email: str
    phone: str
    device_id: str
    access_token: str
    refresh_token: str

    @property
    def auth(self) -> tuple[tuple[str, str], ...]:
        return bearer(self.access_token)


@dataclass
class Harness:
    api: Api
    core: bootstrap.Core
    clock: FixedClock
    channel: grpc.aio.Channel
    tokens: RoleAwareAccessTokens
    notifier: DevelopmentNotifier
    database_url: str
    auth: auth_pb2_grpc.AuthServiceStub = field(init=False)
    wallet: wallet_pb2_grpc.WalletServiceStub = field(init=False)
    ops: ops_pb2_grpc.OpsServiceStub = field(init=False)
    payments: payments_pb2_grpc.PaymentsServiceStub = field(init=False)
    dev: dev_pb2_grpc.DevServiceStub = field(init=False)

    def __post_init__(self) -> None:
        self.auth = auth_pb2_grpc.AuthServiceStub(self.channel)
        self.wallet = wallet_pb2_grpc.WalletServiceStub(self.channel)
        self.ops = ops_pb2_grpc.OpsServiceStub(self.channel)
        self.payments = payments_pb2_grpc.PaymentsServiceStub(self.channel)
        self.dev = dev_pb2_grpc.DevServiceStub(self.channel)

    @property
    def address(self) -> str:
        return self.api.server.address

    def operator_auth(self, name: str = "alice") -> tuple[tuple[str, str], ...]:
        token, _ = self.tokens.issue_operator_token(operator=name, now=self.clock.now())
        return bearer(token)

    async def register(self) -> tuple[str, str, str]:
        email, phone = unique_email(), unique_phone()
        reply = await self.auth.Register(
            auth_pb2.RegisterRequest(email=email, phone_number=phone, password=PASSWORD)
        )
        return reply.user_id, email, phone

    async def login(self, login: str, device_id: str | None = None) -> auth_pb2.LoginResponse:
        response: auth_pb2.LoginResponse = await self.auth.Login(
            auth_pb2.LoginRequest(
                login=login,
                password=PASSWORD,
                device_id=device_id or f"device-{secrets.token_hex(6)}",
                device_name="Test phone",
            )
        )
        return response

    async def new_account(self) -> Account:
        user_id, email, phone = await self.register()
        session = await self.login(email)
        return Account(user_id, email, phone, session.device_id, session.access_token, session.refresh_token)

    async def latest_code(self, account: Account, channel: str) -> str:
        """The code, as the demo reads it: through the dev-only DevService."""
        reply = await self.dev.ListSentMessages(
            dev_pb2.ListSentMessagesRequest(channel=channel), metadata=account.auth
        )
        assert reply.messages, f"no {channel} message for {account.email}"
        body: str = reply.messages[0].body
        return body.split("code is ")[1][:6]

    async def verified_account(self) -> Account:
        account = await self.new_account()
        await self.auth.RequestPhoneVerification(
            auth_pb2.RequestPhoneVerificationRequest(), metadata=account.auth
        )
        code = await self.latest_code(account, "sms")
        await self.auth.VerifyPhone(auth_pb2.VerifyPhoneRequest(phone_number=account.phone, code=code))
        return account

    async def relogin(self, account: Account) -> Account:
        """New tokens (after the clock moved past the access token's expiry)."""
        session = await self.login(account.email, account.device_id)
        account.access_token, account.refresh_token = session.access_token, session.refresh_token
        return account


@dataclass
class Gateway:
    simulator: DerivSimulator
    server: GatewayServer
    channel: grpc.aio.Channel


@pytest.fixture
def journal_url(tmp_path: Path) -> str:
    return databases.create_sqlite_database(tmp_path / "journal.db")


@pytest.fixture
async def gateway(journal_url: str) -> AsyncIterator[Gateway]:
    """The Deriv simulator and a real gateway daemon in front of it (its journal on SQLite)."""
    journal = journal_url
    sim_config = SimulatorConfig(
        port=0, control_port=None, seed=1, rate_limits=RateLimitConfig(enabled=False)
    )
    async with DerivSimulator(sim_config) as simulator:
        config = GatewayConfig(
            ws_url=simulator.url(app_id=None),
            agent_token=DEFAULT_AGENT_TOKEN,
            grpc_addr="127.0.0.1:0",
            database_url=journal,
            request_timeout=5.0,
            backoff_initial=0.05,
            backoff_max=0.5,
        )
        server = GatewayServer(config)
        await server.start()
        await server.wait_serving(10)
        channel = grpc.aio.insecure_channel(server.address)
        yield Gateway(simulator, server, channel)
        await channel.close()
        await server.stop(grace=0.2)


@pytest.fixture
def clock() -> FixedClock:
    """Two days behind the wall clock, so a test can move it a day forward: PyJWT checks a token's
    `iat` against the wall clock even when security.access_tokens verifies as of a given `now`, so
    this clock is pinned to the process's own."""
    return FixedClock(the_processes_clock().replace(microsecond=0) - timedelta(days=2))


StartApi = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def start_api(database_url: str, clock: FixedClock) -> AsyncIterator[StartApi]:
    """Build and start the API on `database_url` (MariaDB, then SQLite); overrides go to build_api."""
    started: list[tuple[Harness, Argon2idHasher]] = []

    async def start(
        *, gateway: Gateway | None = None, settings: dict[str, Any] | None = None, **overrides: Any
    ) -> Harness:
        values: dict[str, Any] = {
            "app_env": "testing",
            "database_url": database_url,
            "redis_url": None,
            "grpc_addr": "127.0.0.1:0",
            "metrics_addr": "127.0.0.1:0",
            "gateway_addr": gateway.server.address if gateway else UNREACHABLE_GATEWAY,
        }
        values.update(settings or {})
        core = bootstrap.bootstrap(Settings(**values), clock=clock, pool_size=5)
        if gateway is not None:  # an API that can move money: floats that can pay it out
            await fund_test_floats(core)
        hasher = Argon2idHasher(FAST_FOR_TESTS)
        tokens = RoleAwareAccessTokens([SIGNING_KEY])
        notifier = DevelopmentNotifier()
        deriv = GatewayDerivAccounts(gateway.channel) if gateway else DEFAULT
        kwargs: dict[str, Any] = {
            "tokens": tokens,
            "hasher": hasher,
            "notifier": notifier,
            "rate_limiter": InProcessRateLimiter(),
        }
        if deriv is not DEFAULT:
            kwargs["deriv"] = deriv
        kwargs.update(overrides)
        api = build_api(core, **kwargs)
        await api.server.start()
        channel = grpc.aio.insecure_channel(api.server.address)
        harness = Harness(api, core, clock, channel, tokens, notifier, database_url)
        started.append((harness, hasher))
        return harness

    yield start
    for harness, hasher in started:
        await harness.channel.close()
        await harness.api.close()
        await harness.core.close()
        hasher.close()


@pytest.fixture
async def api(start_api: StartApi) -> Harness:
    return await start_api()


def details_of(error: grpc.aio.AioRpcError) -> Any:
    from penpay_api.errors import parse_status

    parsed = parse_status(error.trailing_metadata())
    assert parsed is not None, "no grpc-status-details-bin trailer"
    assert parsed.code == error.code().value[0]
    return parsed


def trailer(error: grpc.aio.AioRpcError, key: str) -> str | None:
    for k, v in error.trailing_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode()
    return None
