"""The auditor's fixtures: a migrated MariaDB database of the test's own holding the consistent world
of tests/consistency (every flow booked through the real repositories)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.engine import create_engine
from tests.consistency.helpers import World, build_world


@pytest.fixture
async def engine(fresh_mariadb_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_mariadb_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def world(engine: AsyncEngine, fresh_mariadb_url: str) -> World:
    return await build_world(engine, fresh_mariadb_url)
