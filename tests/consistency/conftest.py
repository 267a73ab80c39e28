"""Fixtures: an engine on a migrated database of the test's own (MariaDB and SQLite), and the
Deriv and M-Pesa simulators in process on 127.0.0.1:0 (as tests/deriv_sim and tests/mpesa_sim
start them)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from deriv_gateway.simulator import DerivSimulator, RateLimitConfig
from deriv_gateway.simulator import SimulatorConfig as DerivConfig
from mpesa_adapter.simulator import DarajaSimulator
from mpesa_adapter.simulator import SimulatorConfig as DarajaConfig
from persistence.engine import create_engine
from tests.consistency.simulators import Deriv, Mpesa


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def deriv_sim() -> AsyncIterator[DerivSimulator]:
    sim = DerivSimulator(
        DerivConfig(port=0, control_port=0, seed=1, rate_limits=RateLimitConfig(enabled=False))
    )
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def mpesa_sim() -> AsyncIterator[DarajaSimulator]:
    async with DarajaSimulator(
        DarajaConfig(port=0, seed=1, callback_delay=0.01, callback_timeout=1.0)
    ) as sim:
        yield sim


@pytest.fixture
async def deriv(deriv_sim: DerivSimulator, http: aiohttp.ClientSession) -> AsyncIterator[Deriv]:
    client = Deriv(deriv_sim, http)
    yield client
    await client.close()


@pytest.fixture
def mpesa(mpesa_sim: DarajaSimulator, http: aiohttp.ClientSession) -> Mpesa:
    return Mpesa(mpesa_sim, http)
