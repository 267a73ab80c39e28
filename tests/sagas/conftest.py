from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.sagas.harness import Stack, running_stack
from workers.redis_bus import RedisStreamsBus


@pytest.fixture
async def stack(
    fresh_mariadb_url: str, redis_url: str, key_prefix: str, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    """MariaDB + Redis Streams + both simulators + gateway + callback endpoints, floats funded.
    After every test the consistency checker must find the database and the simulators' books agree.
    Marked `saga_pushes`: the saga sends each deposit's STK push, woken by its DepositInitiated (a
    deposit created before InitiateDeposit sent it), for the tests of that step."""
    bus = RedisStreamsBus.from_url(redis_url, prefix=key_prefix)
    saga_pushes = request.node.get_closest_marker("saga_pushes") is not None
    try:
        async with running_stack(fresh_mariadb_url, bus, initiator_pushes=not saga_pushes) as running:
            await running.fund_floats()
            yield running
            await running.assert_consistent()
    finally:
        await bus.close()
