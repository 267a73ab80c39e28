"""One Daraja access token for every process, through Redis: each DarajaClient here stands for a process
(its own token cache and Redis connection), all on the same Redis and the same simulator."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as redis

from mpesa_adapter.client import OAUTH, DarajaClient
from mpesa_adapter.config import DarajaConfig
from mpesa_adapter.shared_token import RedisTokenCache
from mpesa_adapter.simulator import DarajaSimulator
from mpesa_adapter.types import StkQueryStatus
from penpay.bootstrap import daraja_token_cache
from penpay.settings import Settings
from tests.mpesa_adapter.conftest import CONSUMER_KEY, CONSUMER_SECRET, DelayingProxy, Harness, phone

pytestmark = pytest.mark.integration

MakeCache = Callable[..., RedisTokenCache]


def issued_tokens(sim: DarajaSimulator) -> list[str]:
    """Every token the simulator issues from now on (each one revokes the one before, as Daraja does)."""
    store = sim.engine.tokens
    issue = store.issue
    issued: list[str] = []

    def counting(*args: Any, **kwargs: Any) -> dict[str, str]:
        answer = issue(*args, **kwargs)
        issued.append(answer["access_token"])
        return answer

    store.issue = counting  # type: ignore[method-assign]
    return issued


@pytest.fixture
async def caches(redis_url: str, key_prefix: str, redis_client: Any) -> AsyncIterator[MakeCache]:
    """A factory of per-"process" caches on the test's Redis keys (redis_client deletes them after)."""
    made: list[RedisTokenCache] = []

    def make(config: DarajaConfig, *, url: str = redis_url, **overrides: Any) -> RedisTokenCache:
        settings: dict[str, Any] = {"prefix": key_prefix, "margin": config.token_refresh_margin}
        client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=1.0)
        cache = RedisTokenCache(
            client, config.base_url, config.consumer_key, owns_client=True, **(settings | overrides)
        )
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.close()


def process(h: Harness, cache: RedisTokenCache | Any) -> DarajaClient:
    return DarajaClient(h.daraja_config, session=h.session, token_cache=cache)


async def expire_all_tokens(h: Harness) -> None:
    async with h.session.post(f"{h.sim.base_url}/__control__/oauth/expire") as resp:
        assert (await resp.json())["expired"] >= 1


async def test_two_processes_calling_at_once_get_one_token_between_them(
    h: Harness, caches: MakeCache, redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    issued = issued_tokens(h.sim)
    a, b = process(h, caches(h.daraja_config)), process(h, caches(h.daraja_config))

    pushes = await asyncio.gather(
        a.stk_push(phone=phone(), amount_cents=1000, account_reference="PP1"),
        b.stk_push(phone=phone(), amount_cents=1000, account_reference="PP2"),
    )

    assert all(p.response_code == "0" for p in pushes)
    assert len(issued) == 1 and a.token_cache.fetches + b.token_cache.fetches == 1
    token = issued[0]
    assert a.token_cache.known_tokens() == b.token_cache.known_tokens() == (token,)
    key = a.token_cache.key  # type: ignore[attr-defined]
    assert await redis_client.get(key) == token.encode()
    # TTL: expires_in ("3599") minus the refresh margin; the key names no credential.
    assert (3599 - 120 - 5) * 1000 < await redis_client.pttl(key) <= (3599 - 120) * 1000
    assert CONSUMER_KEY not in key and CONSUMER_SECRET not in key
    assert token not in caplog.text
    await h.drain()


async def test_after_a_revocation_concurrent_calls_in_both_processes_cause_one_refresh(
    h: Harness, caches: MakeCache, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    issued = issued_tokens(h.sim)
    a, b = process(h, caches(h.daraja_config)), process(h, caches(h.daraja_config))
    checkout = (
        await a.stk_push(phone=phone(), amount_cents=1000, account_reference="PP1")
    ).checkout_request_id
    await b.stk_query(checkout)  # both processes now hold the token in their local copy
    assert len(issued) == 1

    await expire_all_tokens(h)
    # Every call meets 404.001.03 with the old token; one refresh serves both processes, each call is
    # sent once more and succeeds.
    results = await asyncio.gather(*(c.stk_query(checkout) for c in (a, b) * 4))

    assert {r.status for r in results} <= {StkQueryStatus.PENDING, StkQueryStatus.COMPLETED}
    assert len(issued) == 2 and a.token_cache.fetches + b.token_cache.fetches == 2
    assert not any(t in caplog.text for t in issued)
    await h.drain()


async def test_invalidating_a_token_another_process_already_replaced_keeps_the_replacement(
    h: Harness, caches: MakeCache, redis_client: Any
) -> None:
    issued = issued_tokens(h.sim)
    cache_a = caches(h.daraja_config)
    a, b = process(h, cache_a), process(h, caches(h.daraja_config))
    old = await a.access_token()
    checkout = (
        await b.stk_push(phone=phone(), amount_cents=1000, account_reference="PP1")
    ).checkout_request_id
    await expire_all_tokens(h)
    await b.stk_query(checkout)  # b meets the invalid token, deletes it from Redis and stores its successor
    assert issued == [old, issued[1]]

    cache_a.invalidate(old)  # a meets the invalid token later: compare-and-delete leaves the successor

    assert await a.access_token() == issued[1]
    assert await redis_client.get(cache_a.key) == issued[1].encode() and len(issued) == 2
    assert old in cache_a.known_tokens()  # still scrubbed if an error message echoes it
    await h.drain()


async def test_a_lock_left_by_a_dead_process_blocks_no_longer_than_its_ttl(
    h: Harness, caches: MakeCache, redis_client: Any
) -> None:
    issued = issued_tokens(h.sim)
    cache = caches(h.daraja_config, lock_ttl=1.0)
    # What a process killed during its fetch leaves behind: the lock, with its owner value, and no token.
    await redis_client.set(cache.lock_key, "owner-that-died", nx=True, px=1000)

    started = time.monotonic()
    token = await process(h, cache).access_token()
    waited = time.monotonic() - started

    assert 0.9 <= waited < 1.0 + 0.5  # it honoured the lock, and not for longer than its TTL
    assert issued == [token] and await redis_client.get(cache.key) == token.encode()
    assert await redis_client.get(cache.lock_key) is None  # released by its owner (compare-and-delete)


async def test_a_refresh_slower_than_the_lock_ttl_keeps_its_lock_and_the_others_wait_for_it(
    h: Harness, caches: MakeCache, redis_client: Any
) -> None:
    issued = issued_tokens(h.sim)
    assert h.sim.base_url is not None
    proxy = DelayingProxy(h.sim.base_url, delay=1.0, paths=(OAUTH,))  # Daraja answers the token late
    slow_config = replace(h.daraja_config, base_url=await proxy.start())
    slow = DarajaClient(slow_config, session=h.session, token_cache=caches(h.daraja_config, lock_ttl=0.4))
    other = process(h, caches(h.daraja_config, lock_ttl=0.4))
    try:
        refreshing = asyncio.create_task(slow.access_token())
        while not await redis_client.exists(slow.token_cache.lock_key):  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)
        tokens = await asyncio.gather(refreshing, other.access_token())
    finally:
        await proxy.stop()

    assert tokens[0] == tokens[1] and issued == [tokens[0]]


async def test_a_waiter_fetches_itself_when_the_refresher_never_stores_a_token(
    h: Harness, caches: MakeCache, redis_client: Any
) -> None:
    issued = issued_tokens(h.sim)
    cache = caches(h.daraja_config, lock_ttl=60.0, max_wait=0.5)
    await redis_client.set(cache.lock_key, "a-refresher-stuck-for-a-minute", px=60_000)

    started = time.monotonic()
    token = await process(h, cache).access_token()

    assert 0.5 <= time.monotonic() - started < 1.5
    assert issued == [token] and await redis_client.get(cache.key) == token.encode()


async def test_the_local_copy_is_used_for_local_ttl_then_redis_is_read_again(
    h: Harness, caches: MakeCache, redis_client: Any
) -> None:
    issued = issued_tokens(h.sim)
    cache = caches(h.daraja_config, local_ttl=0.3)
    client = process(h, cache)
    token = await client.access_token()
    # Another process stores a successor (with a TTL, as a refresher does).
    await redis_client.set(cache.key, "successor-from-another-process", px=60_000)

    assert await client.access_token() == token  # no Redis round trip inside local_ttl
    await asyncio.sleep(0.35)
    assert await client.access_token() == "successor-from-another-process"
    assert issued == [token]


async def test_without_a_reachable_redis_a_process_fetches_its_own_token(
    h: Harness, caches: MakeCache, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    issued = issued_tokens(h.sim)
    client = process(h, caches(h.daraja_config, url=f"redis://127.0.0.1:{port}/0"))

    accepted = await client.stk_push(phone=phone(), amount_cents=1000, account_reference="PP1")

    assert accepted.response_code == "0" and len(issued) == 1
    assert "Redis failed" in caplog.text and issued[0] not in caplog.text
    await h.drain()


async def test_the_composition_root_shares_the_token_through_redis_only_when_redis_is_configured(
    redis_url: str,
) -> None:
    config = DarajaConfig("http://daraja.test", CONSUMER_KEY, CONSUMER_SECRET, "174379", "pk", "api", "pw")
    assert daraja_token_cache(Settings(redis_url=None), config) is None

    cache = daraja_token_cache(Settings(redis_url=redis_url), config)
    assert isinstance(cache, RedisTokenCache)
    try:
        assert cache.key.startswith("penpay:mpesa:oauth:") and CONSUMER_KEY not in cache.key
        assert cache.lock_key == cache.key + ":lock"
    finally:
        await cache.close()
