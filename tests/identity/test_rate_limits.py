"""Sliding-window rate limits on real Redis, the in-process fallback, and the limits on login/register."""

from __future__ import annotations

import asyncio

import pytest

from application.identity.errors import InvalidCredentials, RateLimited
from application.identity.rate_limits import RateLimitGuard, RateRule
from security.rate_limit import InProcessRateLimiter, RedisRateLimiter

from .conftest import PASSWORD, Identity, unique_email, unique_phone

pytestmark = pytest.mark.integration


async def test_redis_sliding_window_limits_and_says_when_to_retry(
    redis_client: object, key_prefix: str
) -> None:
    limiter = RedisRateLimiter(redis_client, prefix=key_prefix)
    for _ in range(3):
        await limiter.hit("login:ip:1", limit=3, window_seconds=2)
    with pytest.raises(RateLimited) as limited:
        await limiter.hit("login:ip:1", limit=3, window_seconds=2)
    assert 1 <= limited.value.retry_after_seconds <= 2
    await limiter.hit("login:ip:2", limit=3, window_seconds=2)  # other keys are independent
    # concurrent callers share one window: exactly `limit` get through
    results = await asyncio.gather(
        *(limiter.hit("burst", limit=5, window_seconds=10) for _ in range(20)), return_exceptions=True
    )
    assert sum(r is None for r in results) == 5
    await asyncio.sleep(2.1)  # the window slides: calls are allowed again
    await limiter.hit("login:ip:1", limit=3, window_seconds=2)


async def test_without_redis_the_in_process_limiter_takes_over() -> None:
    import redis.asyncio as redis

    unreachable = redis.Redis(host="127.0.0.1", port=1, **RedisRateLimiter.client_options())
    limiter = RedisRateLimiter(unreachable)
    for _ in range(2):
        await limiter.hit("k", limit=2, window_seconds=60)
    with pytest.raises(RateLimited):
        await limiter.hit("k", limit=2, window_seconds=60)
    await unreachable.aclose()

    now = [100.0]
    local = InProcessRateLimiter(clock=lambda: now[0])
    await local.hit("k", limit=1, window_seconds=30)
    with pytest.raises(RateLimited) as limited:
        await local.hit("k", limit=1, window_seconds=30)
    assert limited.value.retry_after_seconds == 30
    now[0] += 30.5
    await local.hit("k", limit=1, window_seconds=30)


async def test_login_and_register_are_limited_per_ip_and_per_account(identity: Identity) -> None:
    identity.service._limits = RateLimitGuard(  # small limits for the test
        InProcessRateLimiter(),
        {
            "login": (RateRule("ip", 100, 60), RateRule("account", 3, 60)),
            "register": (RateRule("ip", 2, 60),),
        },
    )
    email = unique_email()
    await identity.service.register(
        email=email, phone=unique_phone(), password=PASSWORD, client_ip="10.9.9.9"
    )
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            await identity.service.login(
                login=email,
                password="wrong password 1",
                device_id="device-x-1",
                device_name="X",
                client_ip="10.1.1.1",
            )
    with pytest.raises(RateLimited) as limited:
        await identity.service.login(
            login=email, password=PASSWORD, device_id="device-x-1", device_name="X", client_ip="10.1.1.2"
        )
    assert limited.value.retry_after_seconds >= 1 and limited.value.reason == "RATE_LIMITED"

    await identity.service.register(
        email=unique_email(), phone=unique_phone(), password=PASSWORD, client_ip="10.9.9.9"
    )
    with pytest.raises(RateLimited):
        await identity.service.register(
            email=unique_email(), phone=unique_phone(), password=PASSWORD, client_ip="10.9.9.9"
        )


@pytest.mark.parametrize("backend", ["redis", "in-process"])
async def test_a_call_refused_by_one_window_is_counted_in_none(
    backend: str, redis_client: object, key_prefix: str
) -> None:
    """A money call's ip and phone windows are judged together (one round trip on Redis): refused
    by its phone window, the call does not use up its ip window either."""
    limiter = (
        RedisRateLimiter(redis_client, prefix=key_prefix) if backend == "redis" else InProcessRateLimiter()
    )
    guard = RateLimitGuard(limiter, rules={"money": (RateRule("ip", 2, 60), RateRule("phone", 1, 60))})
    await guard.check("money", ip="10.0.0.1", phone="+254700000001")
    with pytest.raises(RateLimited):
        await guard.check("money", ip="10.0.0.1", phone="+254700000001")  # the phone's window is full
    await guard.check("money", ip="10.0.0.1", phone="+254700000002")  # the ip's second call, not its third
    with pytest.raises(RateLimited) as limited:
        await guard.check("money", ip="10.0.0.1", phone="+254700000003")
    assert 1 <= limited.value.retry_after_seconds <= 60
