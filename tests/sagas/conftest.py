from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.sagas.harness import Stack, running_stack
from workers.redis_bus import RedisStreamsBus


@pytest.fixture
async def stack(fresh_mariadb_url: str, redis_url: str, key_prefix: str) -> AsyncIterator[Stack]:
    """MariaDB + Redis Streams + both simulators + gateway + callback endpoints, floats funded.
    After every test the consistency checker must find the database and the simulators' books agree."""
    bus = RedisStreamsBus.from_url(redis_url, prefix=key_prefix)
    try:
        async with running_stack(fresh_mariadb_url, bus) as running:
            await running.fund_floats()
            yield running
            await running.assert_consistent()
    finally:
        await bus.close()
