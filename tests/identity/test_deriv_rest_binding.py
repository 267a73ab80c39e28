"""Binding a user to a new-API (REST) Deriv account: OAuth2 code + PKCE against the REST simulator,
the account read through the real gateway (gRPC, REST transport), tokens encrypted at rest, the
refresh, the "bind again" answer, and a v3 user moving to REST with their history and KYC kept."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import grpc
import pytest
from sqlalchemy import Row, select

from application.identity.compliance import CompliancePolicy
from application.identity.deriv_rest import DerivRestBinding
from application.identity.errors import (
    ComplianceRefused,
    DerivOAuthBrowserMismatch,
    DerivOAuthStateInvalid,
    DerivRebindRequired,
)
from application.identity.kyc_attestation import KycAttestation, KycAttestationRefused, attest_kyc
from deriv_gateway.accounts_client import GatewayDerivAccounts
from deriv_gateway.config import GatewayConfig
from deriv_gateway.oauth_binding import DerivOAuthAdapter
from deriv_gateway.server import GatewayServer
from deriv_gateway.simulator import DEFAULT_AGENT_TOKEN, DerivSimulator, SimulatorConfig
from deriv_gateway.simulator.rest import DerivRestSimulator, RestServerConfig
from domain.shared.clock import FixedClock
from domain.shared.ids import UserId
from domain.user.deriv_login_id import DerivLoginId
from domain.wallet.money import Currency, Money
from persistence.engine import create_engine
from persistence.tables import audit_logs, audit_pending, deriv_accounts
from persistence.transaction_stats import SqlTransactionStats
from security.pii import default_cipher

from .conftest import PASSWORD, Identity, build_identity, unique_email, unique_phone

pytestmark = pytest.mark.integration
REDIRECT = "https://penpay.example/v1/deriv_account/oauth/callback"


@dataclass
class World:
    identity: Identity
    rest: DerivRestBinding
    sim: DerivRestSimulator
    v3: DerivSimulator
    http: aiohttp.ClientSession
    oauth: DerivOAuthAdapter
    database_url: str

    async def consent(self, user_id: UserId, login: str = "alice_w") -> tuple[str, str, str]:
        """Deriv's consent page followed as a browser would: (code, state) from the redirect, and
        the nonce the starting browser keeps."""
        started = await self.rest.start(user_id=user_id)
        url = started.authorize_url
        async with self.http.get(f"{url}&sim_login={login}", allow_redirects=False) as response:
            assert response.status == 302, await response.text()
            location = response.headers["Location"]
        assert location.startswith(REDIRECT)
        query = parse_qs(urlsplit(location).query)
        return query["code"][0], query["state"][0], started.browser_nonce

    def token_posts(self) -> int:
        """Tokens Deriv's token endpoint issued (one per exchange or refresh)."""
        return sum(1 for t in self.sim.state.tokens.values() if t.kind == "oauth")


@pytest.fixture
async def world(database_url: str) -> AsyncIterator[World]:
    v3 = DerivSimulator(SimulatorConfig(port=0, control_port=0, seed=5, request_timeout=3.0))
    await v3.start()
    sim = DerivRestSimulator(v3, RestServerConfig(port=0))
    await sim.start()
    gateway = GatewayServer(
        GatewayConfig(
            ws_url=v3.url(app_id=None),
            app_id="1089",
            agent_token=DEFAULT_AGENT_TOKEN,
            grpc_addr="127.0.0.1:0",
            database_url=database_url,
            request_timeout=5.0,
            rest_base_url=sim.base_url,
            rest_app_id="app-sim-1",
            rest_agent_token="sim-rest-agent-pat",
        )
    )
    await gateway.start()
    await gateway.wait_serving(10)
    channel = grpc.aio.insecure_channel(gateway.address)
    engine = create_engine(database_url, pool_size=5)
    clock = FixedClock(datetime(2026, 12, 6, 8, 0, tzinfo=UTC))
    identity = build_identity(engine, clock, v3.url())
    accounts = GatewayDerivAccounts(channel, timeout=10)
    identity.service._deriv = accounts  # v3 and REST through the one gateway, as penpay api does
    oauth = DerivOAuthAdapter(
        auth_base=sim.base_url,
        client_id="app-sim-1",
        redirect_uri=REDIRECT,
        clock=lambda: clock.now().timestamp(),
    )
    rest = DerivRestBinding(
        unit_of_work=identity.uow, oauth=oauth, deriv=accounts, box=default_cipher(), clock=clock
    )
    identity.service.rest = rest
    try:
        async with aiohttp.ClientSession() as http:
            yield World(identity, rest, sim, v3, http, oauth, database_url)
    finally:
        await oauth.close()
        await engine.dispose()
        await channel.close()
        await gateway.stop(grace=0.2)
        await sim.stop()
        await v3.stop()


async def new_user(world: World) -> UserId:
    service = world.identity.service
    return await service.register(email=unique_email(), phone=unique_phone(), password=PASSWORD)


async def account_row(world: World, user_id: UserId) -> Row[Any]:
    async with world.identity.engine.connect() as connection:
        return (
            await connection.execute(select(deriv_accounts).where(deriv_accounts.c.user_id == user_id.value))
        ).one()


async def test_a_v3_user_moves_to_rest_keeping_kyc_with_tokens_encrypted(world: World) -> None:
    user_id = await new_user(world)
    v3_id = await world.identity.service.bind_deriv_account(user_id=user_id, deriv_token="sim-client1-token")
    assert v3_id == DerivLoginId("CR90000001")

    code, state, nonce = await world.consent(user_id)
    bound_user, rest_id = await world.rest.complete(state=state, code=code, browser_nonce=nonce)
    assert bound_user == user_id and rest_id == DerivLoginId.rest("alice_w") and rest_id.is_rest

    async with world.identity.uow() as uow:
        user = await uow.users.get(user_id)
        credentials = await uow.users.load_deriv_credentials(user_id)
    assert user is not None and user.deriv_login_id == rest_id
    assert user.kyc is not None and user.kyc.is_acceptable()  # the v3 profile came along
    assert credentials is not None and credentials.refresh_token and credentials.expires_at
    row = await account_row(world, user_id)
    assert row.deriv_login_id == "@alice_w"
    assert credentials.token.encode() not in bytes(row.token_enc)
    assert credentials.refresh_token.encode() not in bytes(row.refresh_token_enc)
    async with world.identity.engine.connect() as connection:
        actions = [
            *(await connection.execute(select(audit_pending.c.action))).scalars(),
            *(await connection.execute(select(audit_logs.c.action))).scalars(),
        ]
    assert "DerivAccountMovedToRest" in actions

    # Before money moves: the token is checked against the account, the kept snapshot is used.
    snapshot = await world.identity.service.refresh_kyc(user_id)
    assert snapshot == user.kyc
    # No way back to v3, nor to another REST account, for a bound user.
    from domain.user.errors import DerivAccountAlreadyBound

    with pytest.raises(DerivAccountAlreadyBound):
        await world.identity.service.bind_deriv_account(user_id=user_id, deriv_token="sim-client1-token")
    code, state, nonce = await world.consent(user_id, login="brian_o")
    with pytest.raises(DerivAccountAlreadyBound):
        await world.rest.complete(state=state, code=code, browser_nonce=nonce)
    # The code is single-use: replaying the redirect is refused as a dead sign-in.
    with pytest.raises(DerivRebindRequired):
        await world.rest.complete(state=state, code=code, browser_nonce=nonce)


async def test_bad_or_late_state_changes_nothing(world: World) -> None:
    user_id = await new_user(world)
    code, state, nonce = await world.consent(user_id)
    tampered = state[:-4] + ("AAAA" if not state.endswith("AAAA") else "BBBB")
    with pytest.raises(DerivOAuthStateInvalid):
        await world.rest.complete(state=tampered, code=code, browser_nonce=nonce)
    with pytest.raises(DerivOAuthStateInvalid):
        await world.rest.complete(state="not-ours", code=code, browser_nonce=nonce)
    # The redirect from a browser without this binding's nonce (someone else consented) is
    # refused before the code is spent, and audited.
    _, _, other_nonce = await world.consent(await new_user(world), login="brian_o")
    for wrong in ("", other_nonce):
        with pytest.raises(DerivOAuthBrowserMismatch):
            await world.rest.complete(state=state, code=code, browser_nonce=wrong)
    async with world.identity.engine.connect() as connection:
        refusals = [
            row
            for table in (audit_pending, audit_logs)
            for row in (await connection.execute(select(table.c.action, table.c.subject_id))).all()
            if row.action == "DerivOAuthCallbackRefused"
        ]
    # (a row sealed meanwhile may sit in both tables)
    assert len(refusals) >= 2 and {r.subject_id for r in refusals} == {str(user_id)}
    world.identity.clock.advance(timedelta(minutes=11))
    with pytest.raises(DerivOAuthStateInvalid):
        await world.rest.complete(state=state, code=code, browser_nonce=nonce)
    assert world.token_posts() == 0  # nothing reached Deriv's token endpoint
    async with world.identity.uow() as uow:
        user = await uow.users.get(user_id)
    assert user is not None and user.deriv_login_id is None


async def test_expiring_token_refreshed_once_for_many_callers_then_rebind(world: World) -> None:
    user_id = await new_user(world)
    code, state, nonce = await world.consent(user_id)
    await world.rest.complete(state=state, code=code, browser_nonce=nonce)
    first = await world.rest.token(user_id)
    assert await world.rest.token(user_id) == first and world.token_posts() == 1  # still fresh

    world.identity.clock.advance(timedelta(minutes=59))  # within the refresh margin of 3600 s
    tokens = await asyncio.gather(*(world.rest.token(user_id) for _ in range(5)))
    assert len(set(tokens)) == 1 and tokens[0] != first
    assert world.token_posts() == 2  # one refresh for five callers

    # Deriv revokes the sign-in: the user is told to bind again, distinctly.
    world.sim.state.tokens.pop(tokens[0])
    with pytest.raises(DerivRebindRequired):
        await world.rest.check_account(user_id, DerivLoginId.rest("alice_w"))
    world.sim.state.refresh_tokens.clear()
    world.identity.clock.advance(timedelta(hours=1))
    with pytest.raises(DerivRebindRequired):
        await world.rest.token(user_id)

    # Binding again (same account) replaces the tokens and money may move again.
    code, state, nonce = await world.consent(user_id)
    await world.rest.complete(state=state, code=code, browser_nonce=nonce)
    await world.rest.check_account(user_id, DerivLoginId.rest("alice_w"))


async def test_a_rest_only_user_has_no_kyc_to_judge_so_no_money_moves(world: World) -> None:
    user_id = await new_user(world)
    async with world.identity.uow() as uow:
        user = await uow.users.get(user_id)
        assert user is not None
        user.verify_phone()
        await uow.users.save(user)
        await uow.commit()
    code, state, nonce = await world.consent(user_id, login="carol_n")
    await world.rest.complete(state=state, code=code, browser_nonce=nonce)
    policy = CompliancePolicy(
        unit_of_work=world.identity.uow,
        stats=SqlTransactionStats(world.identity.engine),
        refresh_kyc=world.identity.service.refresh_kyc,
        clock=world.identity.clock,
    )
    with pytest.raises(ComplianceRefused) as refused:
        await policy.check_money_movement(user_id=user_id, amount=Money(1000_00, Currency.KES))
    assert refused.value.rule == "KYC_UNAVAILABLE"
    assert "identity document" in refused.value.message


def attestation(residence: str = "ke", **changes: str) -> KycAttestation:
    fields = {"first_name": "Carol", "last_name": "Njeri", "evidence": "TICKET-7", "attested_by": "alice"}
    fields.update(changes)
    return KycAttestation(date_of_birth=date(1991, 3, 14), residence=residence, **fields)


async def verified_rest_user(world: World, login: str) -> UserId:
    user_id = await new_user(world)
    async with world.identity.uow() as uow:
        user = await uow.users.get(user_id)
        assert user is not None
        user.verify_phone()
        await uow.users.save(user)
        await uow.commit()
    code, state, nonce = await world.consent(user_id, login=login)
    await world.rest.complete(state=state, code=code, browser_nonce=nonce)
    return user_id


def compliance(world: World) -> CompliancePolicy:
    return CompliancePolicy(
        unit_of_work=world.identity.uow,
        stats=SqlTransactionStats(world.identity.engine),
        refresh_kyc=world.identity.service.refresh_kyc,
        clock=world.identity.clock,
    )


async def test_an_operator_attests_a_rest_only_users_kyc_and_the_policy_judges_it(world: World) -> None:
    user_id = await verified_rest_user(world, "carol_n")
    policy, amount = compliance(world), Money(1000_00, Currency.KES)
    uow, clock = world.identity.uow, world.identity.clock

    # A bad attestation changes nothing; a v3 user's KYC is Deriv's, not attested.
    with pytest.raises(KycAttestationRefused):
        await attest_kyc(uow, clock, user_id, attestation(evidence=" "))
    with pytest.raises(ComplianceRefused) as still:
        await policy.check_money_movement(user_id=user_id, amount=amount)
    assert still.value.rule == "KYC_UNAVAILABLE"
    v3_user = await new_user(world)
    await world.identity.service.bind_deriv_account(user_id=v3_user, deriv_token="sim-client1-token")
    with pytest.raises(KycAttestationRefused):
        await attest_kyc(uow, clock, v3_user, attestation())

    snapshot = await attest_kyc(uow, clock, user_id, attestation())
    assert snapshot.is_acceptable() and snapshot.residence == "ke"
    await policy.check_money_movement(user_id=user_id, amount=amount)  # money may move now
    with pytest.raises(KycAttestationRefused):  # kept: not overwritten
        await attest_kyc(uow, clock, user_id, attestation(residence="ug"))
    async with world.identity.engine.connect() as connection:
        details = [
            json.loads(row.details)
            for table in (audit_pending, audit_logs)
            for row in (await connection.execute(select(table.c.action, table.c.details))).all()
            if row.action == "KycAttestedByOperator"
        ]
    assert details and details[0]["attested_by"] == "alice" and details[0]["evidence"] == "TICKET-7"
    assert "Njeri" not in json.dumps(details)  # no personal data in the audit record


async def test_the_command_attests_and_the_policy_still_refuses_a_non_resident(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    from penpay.cli import main

    user_id = await verified_rest_user(world, "brian_o")
    argv = [
        "kyc", "attest", str(user_id), "--first-name", "Brian", "--last-name", "Odhiambo",
        "--date-of-birth", "1988-01-30", "--residence", "ug", "--evidence", "TICKET-9",
        "--operator", "bob", "--database-url", world.database_url,
    ]  # fmt: skip
    assert await asyncio.to_thread(main, argv) == 2  # four-eyes is the API's: break-glass must be said
    assert "two people" in capsys.readouterr().err
    argv += ["--break-glass", "INC-42"]
    assert await asyncio.to_thread(main, argv) == 0
    assert "WARNING: break-glass" in capsys.readouterr().err
    with pytest.raises(ComplianceRefused) as refused:
        await compliance(world).check_money_movement(user_id=user_id, amount=Money(1000_00, Currency.KES))
    assert refused.value.rule == "RESIDENCE_NOT_SUPPORTED"
    assert await asyncio.to_thread(main, argv) == 1  # a second attestation is refused
    async with world.identity.engine.connect() as connection:
        rows = [
            row
            for table in (audit_pending, audit_logs)
            for row in (await connection.execute(select(table.c.action, table.c.subject_id, table.c.details)))
            if row.action == "KycAttestedByOperator" and row.subject_id == str(user_id)
        ]
    details = json.loads(rows[0].details)
    assert (details["break_glass"], details["four_eyes"], details["incident"]) == (True, False, "INC-42")
