"""The REST client against the simulator over real sockets: money moves once, outcomes resolve."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest
import structlog.testing

from deriv_gateway.protocol import errors
from deriv_gateway.rest import OAuthClient, RestResult, authorize_url, pkce_pair

from .conftest import AGENT, ALICE, World

pytestmark = pytest.mark.integration

TRANSFER = "/payment-agents/v1/transfer"


async def _deposit(world: World, request_id: str, **kw: object) -> RestResult:
    async with world.client(**kw) as client:
        return await client.transfer(
            AGENT, request_id=request_id, to_nickname="alice_w", amount="20.00", currency="USD",
            notes=f"PenPay {request_id}",
        )  # fmt: skip


@pytest.mark.parametrize("generation", ["newer", "june"])
@pytest.mark.parametrize("kind", ["drop_after", "timeout_after"])
async def test_unknown_outcome_after_execution_resolves_to_one_transfer(
    world: World, generation: str, kind: str
) -> None:
    await world.generation(generation)
    await world.fault(kind=kind, endpoint="transfer", times=1)
    result = await _deposit(world, f"dep-{kind}-{generation}")
    assert result.status == "complete" and result.resolved
    assert world.executed(result.request_id) == 1
    assert world.posts(TRANSFER) == 1  # resolved by lookup, never by a second POST
    books = world.v3.engine.books.find_transfers(reference=result.request_id)
    assert result.transaction_id == books[0].debit_transaction_id
    lookups = [e["path"] for e in world.rest.wire if e["method"] == "GET"]
    if generation == "june":
        assert "/wallet/v1/transactions/payment_agent" in lookups  # the status endpoint is absent
    else:
        assert lookups == [f"{TRANSFER}/{result.request_id}"]


async def test_a_client_timeout_after_the_server_executed_resolves(world: World) -> None:
    # a real socket timeout needs real time: kept to a tenth of a second
    await world.fault(kind="delay_after", endpoint="transfer", delay=0.5, times=1)
    result = await _deposit(world, "dep-timeout", request_timeout=0.1)
    assert result.resolved and world.executed("dep-timeout") == 1
    assert world.posts(TRANSFER) == 1


async def test_same_request_id_twenty_times_at_once_executes_once(world: World) -> None:
    async with world.client() as client:
        results = await asyncio.gather(
            *(
                client.transfer(
                    AGENT, request_id="dep-20", to_nickname="alice_w", amount="5.00", currency="USD"
                )
                for _ in range(20)
            )
        )
    assert world.executed("dep-20") == 1
    assert {r.transaction_id for r in results} == {results[0].transaction_id}
    assert sum(1 for r in results if not r.resolved) == 1  # the others heard RequestIDUsed and looked it up


async def test_request_id_used_resolves(world: World) -> None:
    await world.fault(kind="request_id_used", endpoint="transfer", times=1)
    result = await _deposit(world, "dep-used")
    assert result.resolved and result.status == "complete"
    assert world.executed("dep-used") == 1


@pytest.mark.parametrize("settle_to", ["complete", "rejected", "failed"])
async def test_pending_transfer_is_followed_until_it_settles(world: World, settle_to: str) -> None:
    await world.fault(kind="pending", endpoint="transfer", settle_to=settle_to, settle_after=30, times=1)
    if settle_to == "complete":
        result = await _deposit(world, "dep-pending", poll_interval=10)
        assert result.status == "complete" and result.transaction_id is not None
        assert world.executed("dep-pending") == 1
    else:
        with pytest.raises(errors.PaymentAgentTransferError):
            await _deposit(world, "dep-pending", poll_interval=10)
        assert world.executed("dep-pending") == 0
    assert world.posts(TRANSFER) == 1


async def test_pending_longer_than_followed_stays_unknown(world: World) -> None:
    await world.fault(kind="pending", endpoint="transfer", settle_after=600, times=1)
    with pytest.raises(errors.OutcomeUnknown):
        await _deposit(world, "dep-slow", poll_interval=10, follow_for=60)
    assert world.executed("dep-slow") == 0
    world.clock.advance(600)
    async with world.client() as client:
        found = await client.lookup_transfer(AGENT, "dep-slow")
    assert found is not None and found.status == "complete"
    assert world.executed("dep-slow") == 1


async def test_429_defers_without_executing(world: World) -> None:
    await world.fault(kind="rate_limit", endpoint="transfer", retry_in=40, times=1)
    async with world.client() as client:
        with pytest.raises(errors.RateLimit) as caught:
            await client.transfer(
                AGENT, request_id="dep-429", to_nickname="alice_w", amount="5.00", currency="USD"
            )
        assert isinstance(caught.value, errors.NotExecuted)  # deferred: not an attempt
        assert caught.value.details["retry_after"] == pytest.approx(40, abs=1)
        assert world.executed("dep-429") == 0
        # next_request_at is honoured: held back here, nothing sent
        before = len(world.rest.wire)
        with pytest.raises(errors.RateLimit):
            await client.transfer(
                AGENT, request_id="dep-429", to_nickname="alice_w", amount="5.00", currency="USD"
            )
        assert len(world.rest.wire) == before
        world.clock.advance(41)
        result = await client.transfer(
            AGENT, request_id="dep-429", to_nickname="alice_w", amount="5.00", currency="USD"
        )
    assert not result.resolved and world.executed("dep-429") == 1


async def test_the_limiter_holds_back_the_61st_call_of_a_minute(world: World) -> None:
    await world.control("POST", "/config", {"rate_limit_enabled": False})
    async with world.client(per_minute=3) as client:
        for _ in range(3):
            await client.balance(AGENT)
        with pytest.raises(errors.RateLimit) as caught:
            await client.balance(AGENT)
        assert caught.value.details.get("held_back") is True
        assert len(world.rest.wire) == 3
        # another token has its own budget
        await client.balance(ALICE, wallet_type="main")
        world.clock.advance(60)
        await client.balance(AGENT)


async def test_transient_500_is_unknown_and_resolved_as_not_executed(world: World) -> None:
    await world.fault(kind="transient_500", endpoint="transfer", times=1)
    with pytest.raises(errors.OutcomeUnknown):
        await _deposit(world, "dep-500")
    assert world.executed("dep-500") == 0 and world.posts(TRANSFER) == 1
    # the operation may be sent again with the same id: Deriv's request_id keeps it single
    result = await _deposit(world, "dep-500")
    assert world.executed("dep-500") == 1 and not result.resolved


async def test_a_refused_lookup_leaves_the_outcome_unknown(world: World) -> None:
    await world.fault(kind="drop_after", endpoint="transfer", times=1)
    await world.fault(kind="forbidden", endpoint="transfer_status", times=1)
    with pytest.raises(errors.OutcomeUnknown) as caught:
        await _deposit(world, "dep-forbidden")
    assert caught.value.details.get("lookup") == "InputError"  # never a refusal of the transfer
    assert world.executed("dep-forbidden") == 1


async def test_connection_refused_is_not_sent(world: World) -> None:
    async with world.client() as client:
        client.base_url = "http://127.0.0.1:9"  # nothing listens on the discard port
        with pytest.raises(errors.NotConnected):
            await client.transfer(
                AGENT, request_id="dep-nc", to_nickname="alice_w", amount="5.00", currency="USD"
            )


async def test_refusals_are_definite(world: World) -> None:
    await world.control("PATCH", "/identities/CR90000001", {"deposit_enabled": False})
    with pytest.raises(errors.PaymentAgentTransferError) as caught:
        await _deposit(world, "dep-refused")
    assert caught.value.code == "NoClientWallet"
    async with world.client() as client:
        with pytest.raises(errors.InvalidToken):
            await client.balance("not-a-token")


async def test_a_status_answer_about_another_request_is_not_used(world: World) -> None:
    await world.fault(kind="drop_after", endpoint="transfer", times=1)
    await world.fault(kind="foreign_answer", endpoint="transfer_status", times=1)
    with pytest.raises(errors.OutcomeUnknown):
        await _deposit(world, "dep-foreign")
    assert world.executed("dep-foreign") == 1  # it did run: only a later, honest lookup may say so
    async with world.client() as client:
        found = await client.lookup_transfer(AGENT, "dep-foreign")
    assert found is not None and found.status == "complete"


async def test_no_token_or_code_in_log_lines(world: World) -> None:
    # The events as the client wrote them, before any redacting processor, and whatever logging set-up
    # an earlier test in this process left behind: nothing secret may be in them to begin with.
    await world.fault(kind="drop_after", endpoint="withdraw", times=1)
    with structlog.testing.capture_logs() as events:
        code = await _withdraw_with_a_wrong_code_then_the_right_one(world)
    assert any(str(e.get("event", "")).startswith("deriv_rest.") for e in events)  # the lines exist
    logged = "\n".join(repr(e) for e in events)
    for secret in (ALICE, AGENT, code, "bogus-token-value"):
        assert secret not in logged


async def _withdraw_with_a_wrong_code_then_the_right_one(world: World) -> str:
    async with world.client() as client:
        await client.request_withdrawal_code(ALICE, agent_id=1001, amount="15.00", currency="USD")
        code = world.latest_code("CR90000001")
        with pytest.raises(errors.InvalidToken):
            await client.withdraw(
                ALICE, request_id="wd-log-0", agent_id=1001, amount="15.00", currency="USD",
                verification_code="999999",
            )  # fmt: skip
        await client.withdraw(
            ALICE, request_id="wd-log", agent_id=1001, amount="15.00", currency="USD", verification_code=code
        )
        with pytest.raises(errors.InvalidToken):
            await client.balance("bogus-token-value")
    return code


async def test_withdrawal_with_code_settles(world: World) -> None:
    async with world.client() as client:
        sent = await client.request_withdrawal_code(ALICE, agent_id=1001, amount="15.00", currency="USD")
        assert sent.expires_at > sent.next_request_at
        with pytest.raises(errors.RateLimit):  # a second code within the resend floor: deferred
            await client.request_withdrawal_code(ALICE, agent_id=1001, amount="15.00", currency="USD")
        code = world.latest_code("CR90000001")
        await world.fault(kind="drop_after", endpoint="withdraw", times=1)
        result = await client.withdraw(
            ALICE, request_id="wd-1", agent_id=1001, amount="15.00", currency="USD", verification_code=code
        )
    assert result.status == "complete" and result.resolved
    assert world.executed("wd-1") == 1
    assert world.posts("/payment-agents/v1/withdraw") == 1


async def test_wrong_code_is_refused_and_locks_after_three(world: World) -> None:
    async with world.client() as client:
        await client.request_withdrawal_code(ALICE, agent_id=1001, amount="15.00", currency="USD")
        for i in range(3):
            with pytest.raises(errors.InvalidToken) as caught:
                await client.withdraw(
                    ALICE, request_id=f"wd-bad-{i}", agent_id=1001, amount="15.00", currency="USD",
                    verification_code="000000",
                )  # fmt: skip
        assert caught.value.code == "InvalidOTP"
        with pytest.raises(errors.InvalidToken) as caught:
            await client.withdraw(
                ALICE, request_id="wd-bad-4", agent_id=1001, amount="15.00", currency="USD",
                verification_code=world.latest_code("CR90000001"),
            )  # fmt: skip
        assert caught.value.code == "OtpValidationRateLimitExceeded"


async def test_balance_from_wallets(world: World) -> None:
    async with world.client() as client:
        before = await client.balance(AGENT)
        await client.transfer(
            AGENT, request_id="dep-bal", to_nickname="alice_w", amount="20.00", currency="USD"
        )
        after = await client.balance(AGENT)
    assert (before.currency, before.minor - after.minor) == ("USD", 2000)


async def test_oauth_bind_then_pay_with_the_access_token(world: World) -> None:
    verifier, challenge = pkce_pair()
    url = authorize_url(
        world.rest.base_url, client_id="app-sim-1", redirect_uri="https://penpay.example/cb",
        scopes=["payment"], state="s1", challenge=challenge,
    )  # fmt: skip
    async with world.http.get(url, allow_redirects=False) as r:
        code = parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]
    oauth = OAuthClient(world.rest.base_url, "app-sim-1", session=world.http, clock=world.clock.now)
    tokens = await oauth.exchange(code, redirect_uri="https://penpay.example/cb", verifier=verifier)
    assert tokens.expires_at == world.clock.now() + 3600 and tokens.refresh_token
    with pytest.raises(errors.InvalidToken):  # codes are single use: bind again
        await oauth.exchange(code, redirect_uri="https://penpay.example/cb", verifier=verifier)
    # concurrent refreshes share one request (a second would find the token rotated away)
    fresh = await asyncio.gather(*(oauth.refresh(tokens.refresh_token) for _ in range(5)))
    assert len({t.access_token for t in fresh}) == 1
    async with world.client() as client:
        settings, _ = await client.call(
            "GET", "/payment-agents/v1/clients/me", fresh[0].access_token, call="get_settings"
        )
    assert settings["deposit_enabled"] is True
