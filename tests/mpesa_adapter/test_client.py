"""The Daraja client against the simulator: tokens, retries, faults, OutcomeUnknown."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mpesa_adapter import errors
from mpesa_adapter.access_token import TokenCache
from mpesa_adapter.client import B2C, STK_PUSH, DarajaClient
from mpesa_adapter.types import StkQueryStatus
from tests.mpesa_adapter.conftest import DelayingProxy, Harness, build_harness, phone

pytestmark = pytest.mark.integration


async def test_token_is_shared_and_refreshed_on_404_001_03(h: Harness) -> None:
    _, checkout = await h.push(phone(), 10)
    other = DarajaClient(h.daraja_config, session=h.session)  # same credential set: same token
    assert other.token_cache is h.client.token_cache
    await asyncio.gather(*(other.stk_query(checkout) for _ in range(5)))
    assert h.client.token_cache.fetches == 1

    async with h.session.post(f"{h.sim.base_url}/__control__/oauth/expire") as resp:
        assert (await resp.json())["expired"] == 1
    # Every concurrent caller meets 404.001.03; one refresh serves them all, each call is sent once more.
    results = await asyncio.gather(*(h.client.stk_query(checkout) for _ in range(4)))
    assert {r.status for r in results} <= {StkQueryStatus.PENDING, StkQueryStatus.COMPLETED}
    assert h.client.token_cache.fetches == 2

    # Money-moving calls too: the refused call never reached M-Pesa, so resending it is safe.
    async with h.session.post(f"{h.sim.base_url}/__control__/oauth/expire") as resp:
        await resp.read()
    await h.push(phone(), 10)
    assert h.client.token_cache.fetches == 3
    await h.drain()


async def test_per_api_invalid_token_codes_and_no_token_in_errors(db: AsyncEngine) -> None:
    async for h in build_harness(db, sim_overrides={"invalid_token_style": "per_api"}):
        await h.client.access_token()
        stale = h.client.token_cache.known_tokens()[0]
        async with h.session.post(f"{h.sim.base_url}/__control__/oauth/expire") as resp:
            await resp.read()
        _, ocid = await h.payout(phone(), 100)  # 401.002.01 "... Invalid Access Token - <token>"
        async with h.session.post(f"{h.sim.base_url}/__control__/oauth/expire") as resp:
            await resp.read()
        await h.client.transaction_status(originator_conversation_id=ocid)  # 400.003.01
        assert h.client.token_cache.fetches == 3
        await h.drain()

        # A token that stays invalid surfaces as InvalidAccessToken, scrubbed of the token.
        cache = TokenCache()
        client = DarajaClient(h.daraja_config, session=h.session, token_cache=cache)

        async def always_stale(stale: str = stale) -> tuple[str, float]:
            return stale, 3600.0

        await cache.get(always_stale)
        cache.invalidate = lambda token: None  # type: ignore[method-assign]
        with pytest.raises(errors.InvalidAccessToken) as caught:
            await client.b2c_payment(
                originator_conversation_id="PENPAY-x1", phone=phone(), amount_cents=10_000
            )
        assert caught.value.error_code == "401.002.01"
        assert stale not in str(caught.value) and "***" in caught.value.error_message


async def test_token_refreshed_before_expiry(db: AsyncEngine) -> None:
    async for h in build_harness(
        db, sim_overrides={"token_ttl": 2}, client_overrides={"token_refresh_margin": 0.9}
    ):
        await h.client.access_token()
        await asyncio.sleep(0.6)  # expires_in "1": refreshed at half-life, before the gateway refuses it
        await h.client.access_token()
        assert h.client.token_cache.fetches == 2


async def test_wrong_consumer_secret_is_authentication_failed(h: Harness) -> None:
    client = h.make_client(consumer_secret="wrong")
    with pytest.raises(errors.AuthenticationFailed) as caught:
        await client.stk_query("ws_CO_x")
    assert caught.value.http_status == 400 and "wrong" not in str(caught.value)


async def test_spike_arrest_quota_and_internal_error_are_retried_for_queries_only(h: Harness) -> None:
    _, checkout = await h.push(phone(), 10)
    await h.drain()
    for kind in ("spike_arrest", "quota", "internal_error"):
        h.sim.add_fault(kind, api="stk_query", count=2)
        assert (await h.client.stk_query(checkout)).status == StkQueryStatus.COMPLETED
    h.sim.add_fault("spike_arrest", api="stk_query", count=10)
    with pytest.raises(errors.SpikeArrest):
        await h.client.stk_query(checkout)  # gives up after query_attempts
    h.sim.engine.faults.faults.clear()

    pushes_before = len(h.sim.books["stk"]["transactions"])
    h.sim.add_fault("spike_arrest", api="stk")
    with pytest.raises(errors.SpikeArrest):
        await h.client.stk_push(phone=phone(), amount_cents=1000, account_reference="PP1")
    h.sim.add_fault("quota", api="b2c")
    with pytest.raises(errors.QuotaViolation):
        await h.client.b2c_payment(originator_conversation_id="PENPAY-q1", phone=phone(), amount_cents=10_000)
    # 500.003.1001 after the gateway took a money-moving POST: it may have acted, so: unknown.
    h.sim.add_fault("internal_error", api="stk")
    with pytest.raises(errors.OutcomeUnknown):
        await h.client.stk_push(phone=phone(), amount_cents=1000, account_reference="PP1")
    assert len(h.sim.books["stk"]["transactions"]) == pushes_before  # nothing was resent


async def test_phone_lab_spike_arrest_rule(h: Harness) -> None:
    with pytest.raises(errors.SpikeArrest):
        await h.client.stk_push(phone="254700071234", amount_cents=1000, account_reference="PP1")


async def test_rate_limit_spike_arrest_is_backed_off(db: AsyncEngine) -> None:
    backoff = {"query_attempts": 10, "retry_initial_wait": 0.25, "retry_max_wait": 1.0}
    async for h in build_harness(db, sim_overrides={"spike_arrest_rps": 2}, client_overrides=backoff):
        _, checkout = await h.push(phone(), 10)
        results = await asyncio.gather(*(h.client.stk_query(checkout) for _ in range(4)))
        assert all(r.checkout_request_id == checkout for r in results)
        await h.drain()


async def test_timed_out_stk_push_is_outcome_unknown_and_not_resent(h: Harness) -> None:
    assert h.sim.base_url is not None
    proxy = DelayingProxy(h.sim.base_url, delay=1.5, paths=(STK_PUSH, B2C))
    slow = h.make_client(base_url=await proxy.start(), request_timeout=0.5)
    try:
        msisdn = phone()
        with pytest.raises(errors.OutcomeUnknown) as caught:
            await slow.stk_push(phone=msisdn, amount_cents=5_000, account_reference="PP1")
        assert caught.value.operation == "stk_push"
        assert proxy.forwarded.count(STK_PUSH) == 1  # sent exactly once
        await h.drain()
        (push,) = [t for t in h.sim.books["stk"]["transactions"] if t["phone"] == msisdn]
        assert push["status"] != "pending"  # the simulator did act on it: this is why it is "unknown"

        ocid = "PENPAY-timeout-b2c"
        with pytest.raises(errors.OutcomeUnknown) as caught_b2c:
            await slow.b2c_payment(originator_conversation_id=ocid, phone=msisdn, amount_cents=10_000)
        assert caught_b2c.value.originator_conversation_id == ocid
        assert proxy.forwarded.count(B2C) == 1
        # The explicit retry reuses the id: Daraja says "duplicate", so the first attempt got through.
        with pytest.raises(errors.DuplicateOriginatorConversationID):
            await h.client.b2c_payment(originator_conversation_id=ocid, phone=msisdn, amount_cents=10_000)
        await h.drain()
        assert h.sim.books["b2c"]["total_paid"] == 100
    finally:
        await slow.close()
        await proxy.stop()


async def test_unreachable_daraja(h: Harness) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = h.make_client(base_url=f"http://127.0.0.1:{port}", token_attempts=1, query_attempts=2)
    with pytest.raises(errors.DarajaUnavailable):
        await client.stk_query("ws_CO_x")


async def test_business_errors(h: Harness) -> None:
    msisdn = phone()
    await h.client.stk_push(phone=msisdn, amount_cents=1000, account_reference="PP1")
    with pytest.raises(errors.SubscriberLocked):
        await h.client.stk_push(phone=msisdn, amount_cents=2000, account_reference="PP1")
    with pytest.raises(errors.DarajaConfigurationError):
        await h.make_client(passkey="0" * 64).stk_push(
            phone=phone(), amount_cents=1000, account_reference="PP1"
        )
    with pytest.raises(errors.DarajaConfigurationError):
        await h.make_client(shortcode="999999").stk_push(
            phone=phone(), amount_cents=1000, account_reference="P"
        )
    with pytest.raises(errors.DarajaError) as bad:
        await h.client.stk_push(
            phone=phone(), amount_cents=1000, account_reference="PP1", callback_url="nope"
        )
    assert (bad.value.error_code, bad.value.http_status) == ("400.002.02", 400)
    await h.drain()


async def test_invalid_requests_are_refused_before_sending(h: Harness) -> None:
    sent = len(h.sim.books["stk"]["transactions"])
    for kwargs in (
        {"amount_cents": 1050},  # not whole shillings: rejected, never rounded
        {"amount_cents": 0},
        {"phone": "254812345678"},
        {"account_reference": "much-too-long-reference"},
    ):
        args = {"phone": phone(), "amount_cents": 1000, "account_reference": "PP1"} | kwargs
        with pytest.raises(errors.InvalidRequest):
            await h.client.stk_push(**args)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidRequest):
        await h.client.b2c_payment(originator_conversation_id="x", phone=phone(), amount_cents=900)
    assert len(h.sim.books["stk"]["transactions"]) == sent


async def test_phone_numbers_are_normalised(h: Harness) -> None:
    digits = phone()
    accepted = await h.client.stk_push(phone="0" + digits[3:], amount_cents=1000, account_reference="PP1")
    assert h.sim.engine.books.stk[accepted.checkout_request_id].phone == digits
    await h.drain()


async def test_client_owns_its_session_when_not_given_one(h: Harness) -> None:
    async with DarajaClient(h.daraja_config) as client:
        assert (await client.stk_query("ws_CO_none")).status == StkQueryStatus.UNKNOWN
    assert isinstance(h.session, aiohttp.ClientSession)
