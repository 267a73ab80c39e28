"""Fixtures for the Deriv simulator tests (over real sockets on 127.0.0.1, port 0)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect

from deriv_gateway.simulator import DerivSimulator

from .helpers import Client, Control, fast_config


@pytest.fixture
async def make_sim() -> AsyncIterator[Callable[..., Awaitable[DerivSimulator]]]:
    started: list[DerivSimulator] = []

    async def factory(**overrides: Any) -> DerivSimulator:
        sim = DerivSimulator(fast_config(**overrides))
        await sim.start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        await sim.stop()


@pytest.fixture
async def sim(make_sim: Callable[..., Awaitable[DerivSimulator]]) -> DerivSimulator:
    return await make_sim()


@pytest.fixture
async def connect_client() -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    opened: list[ClientConnection] = []

    async def factory(sim: DerivSimulator, token: str | None = None, **kwargs: Any) -> Client:
        ws = await connect(sim.url(), **kwargs)
        opened.append(ws)
        client = Client(ws)
        if token:
            await client.login(token)
        return client

    yield factory
    for ws in opened:
        await ws.close()


@pytest.fixture
async def client(sim: DerivSimulator, connect_client: Callable[..., Awaitable[Client]]) -> Client:
    return await connect_client(sim)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def control(sim: DerivSimulator, http: aiohttp.ClientSession) -> Control:
    assert sim.control_url
    return Control(sim.control_url, http)
