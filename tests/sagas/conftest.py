from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from tests.sagas.harness import FAST_POLICY, PATIENT_QUERIES, Stack, running_stack
from workers.redis_bus import RedisStreamsBus

# The production STK-callback wait: a deposit that needs its timer cannot settle in a test's time.
PRODUCTION_WAIT = replace(FAST_POLICY, stk_callback_wait=timedelta(seconds=60))


@asynccontextmanager
async def _stack(
    database_url: str, redis_url: str, key_prefix: str, request: pytest.FixtureRequest, **options: Any
) -> AsyncIterator[Stack]:
    bus = RedisStreamsBus.from_url(redis_url, prefix=key_prefix)
    saga_pushes = request.node.get_closest_marker("saga_pushes") is not None
    saga_payouts = request.node.get_closest_marker("saga_payouts") is not None
    options.setdefault("initiator_pushes", not saga_pushes)
    options.setdefault("initiator_payouts", not saga_payouts)
    try:
        async with running_stack(database_url, bus, **options) as running:
            await running.fund_floats()
            yield running
            await running.assert_consistent()
    finally:
        await bus.close()


@pytest.fixture
async def stack(
    fresh_mariadb_url: str, redis_url: str, key_prefix: str, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    """MariaDB + Redis Streams + both simulators + gateway + callback endpoints, floats funded.
    After every test the consistency checker must find the database and the simulators' books agree.
    Marked `saga_pushes`: the saga sends each deposit's STK push, woken by its DepositInitiated (a
    deposit created before InitiateDeposit sent it), for the tests of that step; `saga_payouts`:
    the saga sends each withdrawal's B2C, woken by the debit ConfirmWithdrawal recorded."""
    async with _stack(fresh_mariadb_url, redis_url, key_prefix, request) as running:
        yield running


@pytest.fixture
async def slow_stack(
    fresh_mariadb_url: str, redis_url: str, key_prefix: str, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    """`stack` with PRODUCTION_WAIT and the simulator's callbacks sent at once (as in the e2e
    benchmark): a callback can beat the push's stored answer."""
    options = {"policy": PRODUCTION_WAIT, "mpesa_overrides": {"callback_delay": 0.0}}
    async with _stack(fresh_mariadb_url, redis_url, key_prefix, request, **options) as running:
        yield running


@pytest.fixture
async def patient_stack(
    fresh_mariadb_url: str, redis_url: str, key_prefix: str, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    """`stack` with PATIENT_QUERIES: a query the saga counts is never asked again in a test's time."""
    options = {"policy": PATIENT_QUERIES}
    async with _stack(fresh_mariadb_url, redis_url, key_prefix, request, **options) as running:
        yield running
