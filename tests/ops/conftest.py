"""The review queue over real sockets: the saga stack of tests/sagas (MariaDB, Redis Streams, both
simulators, the Deriv gateway) and the public gRPC API built on the same database, reached by real
stubs over TCP with staff tokens of different people and roles."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from websockets.asyncio.client import connect

from deriv_gateway.accounts_client import GatewayDerivAccounts
from deriv_gateway.payments_client import GatewayDerivStatement
from deriv_gateway.simulator import DEFAULT_AGENT_TOKEN
from domain.shared.clock import FixedClock
from mpesa_adapter.client import DarajaClient
from mpesa_adapter.reversal import DarajaReversals
from mpesa_adapter.review_lookups import DarajaReviewLookups
from penpay import bootstrap
from penpay.ops.v1 import ops_pb2_grpc
from penpay.settings import Settings
from penpay.wiring.api import Api, build_api
from penpay_api.auth import RoleAwareAccessTokens
from security.access_tokens import SigningKey
from security.notify import DevelopmentNotifier
from security.passwords import FAST_FOR_TESTS, Argon2idHasher
from security.rate_limit import InProcessRateLimiter
from tests.sagas.harness import Stack, running_stack
from workers.redis_bus import RedisStreamsBus

SIGNING_KEY = SigningKey.generate("ops-review-k1")
# Tokens are issued and checked as of this moment (never the wall clock).
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Review:
    stack: Stack
    api: Api
    core: bootstrap.Core
    channel: grpc.aio.Channel
    ops: ops_pb2_grpc.OpsServiceStub
    tokens: RoleAwareAccessTokens
    clock: FixedClock  # the API's: NOW unless a test moves it

    def staff(self, name: str, *roles: str) -> tuple[tuple[str, str], ...]:
        token, _ = self.tokens.issue_operator_token(operator=name, now=self.clock.now(), roles=roles)
        return bearer(token)

    async def pay_by_hand(self, loginid: str, amount: str, description: str) -> dict[str, Any]:
        """What an operator does in Deriv's own tools: a payment-agent transfer with our reference."""
        async with connect(self.stack.deriv_sim.url(app_id=1089)) as ws:
            await ws.send(json.dumps({"authorize": DEFAULT_AGENT_TOKEN, "req_id": 1}))
            assert "error" not in json.loads(await ws.recv())
            await ws.send(
                json.dumps(
                    {
                        "paymentagent_transfer": 1,
                        "transfer_to": loginid,
                        "amount": float(amount),
                        "currency": "USD",
                        "description": description,
                        "req_id": 2,
                    }
                )
            )
            reply: dict[str, Any] = json.loads(await ws.recv())
        assert "error" not in reply, reply
        return reply

    async def deriv_control(self, method: str, path: str, body: Any = None) -> Any:
        url = f"{self.stack.deriv_sim.control_url}{path}"
        async with self.stack.http.request(method, url, json=body) as response:
            assert response.status < 300, await response.text()
            return await response.json()


@asynccontextmanager
async def review_stack(
    database_url: str, redis_url: str, key_prefix: str, **stack_options: Any
) -> AsyncIterator[Review]:
    """The review stack on a migrated database; checked for consistency when the block ends well."""
    bus = RedisStreamsBus.from_url(redis_url, prefix=key_prefix)
    try:
        async with running_stack(database_url, bus, **stack_options) as stack:
            await stack.fund_floats()
            settings = Settings(
                app_env="testing",
                database_url=database_url,
                redis_url=None,
                grpc_addr="127.0.0.1:0",
                gateway_addr=stack.gateway.address,
            )
            clock = FixedClock(NOW)
            core = bootstrap.bootstrap(settings, clock=clock, pool_size=5)
            gateway = grpc.aio.insecure_channel(stack.gateway.address)
            hasher = Argon2idHasher(FAST_FOR_TESTS)
            tokens = RoleAwareAccessTokens([SIGNING_KEY])
            daraja = DarajaClient(stack.daraja_config)
            api = build_api(
                core,
                metrics_addr=None,
                tokens=tokens,
                hasher=hasher,
                notifier=DevelopmentNotifier(),
                deriv=GatewayDerivAccounts(gateway),
                rate_limiter=InProcessRateLimiter(),
                payments=None,
                deriv_statement=GatewayDerivStatement(gateway, timeout=10.0),
                mpesa_lookups=DarajaReviewLookups(
                    daraja,
                    core.engine,
                    inbox=bootstrap.callback_inbox(core),
                    lost_push=bootstrap.lost_push_reads(core, daraja),
                    polls=100,
                    poll_interval=0.05,
                ),
                mpesa_reversals=DarajaReversals(daraja),
            )
            await api.server.start()
            channel = grpc.aio.insecure_channel(api.server.address)
            try:
                yield Review(stack, api, core, channel, ops_pb2_grpc.OpsServiceStub(channel), tokens, clock)
                await stack.assert_consistent()
            finally:
                await channel.close()
                await api.close()
                await core.close()
                await gateway.close()
                await daraja.close()
                hasher.close()
    finally:
        await bus.close()


@pytest.fixture
async def review(fresh_mariadb_url: str, redis_url: str, key_prefix: str) -> AsyncIterator[Review]:
    async with review_stack(fresh_mariadb_url, redis_url, key_prefix) as stack:
        yield stack
