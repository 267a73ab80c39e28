"""The engine's pooled connections on MariaDB: no ping per checkout, and a connection the server
closed (a restart, KILL, wait_timeout) is replaced when a unit of work's first statement finds it
dead, and that statement sent again (persistence.engine.RetryingConnection)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.engine import create_engine
from persistence.unit_of_work import SqlUnitOfWork
from tests import databases

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(mariadb_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(mariadb_url, pool_size=1)
    yield engine
    await engine.dispose()


async def _session_pings(engine: AsyncEngine) -> tuple[int, int]:
    """(connection id, pings this connection has received so far: COM_PING counts as an admin command)."""
    async with engine.connect() as connection:
        connection_id = (await connection.execute(text("SELECT CONNECTION_ID()"))).scalar_one()
        row = (await connection.execute(text("SHOW SESSION STATUS LIKE 'Com_admin_commands'"))).one()
    return int(connection_id), int(row[1])


def _kill(connection_id: int) -> None:
    admin = databases._admin()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"KILL CONNECTION {int(connection_id)}")
    finally:
        admin.close()


async def test_a_checkout_sends_no_ping(engine: AsyncEngine) -> None:
    first_id, first_pings = await _session_pings(engine)
    second_id, second_pings = await _session_pings(engine)
    assert second_id == first_id  # the same pooled connection, checked out twice
    assert second_pings == first_pings


async def test_a_connection_the_server_closed_is_replaced_before_use(engine: AsyncEngine) -> None:
    killed, _ = await _session_pings(engine)
    _kill(killed)  # the pooled connection is now dead, and nothing has read from it since
    async with SqlUnitOfWork(engine) as uow:  # its first statement needs no retry by the caller
        now_id = (await uow.connection.execute(text("SELECT CONNECTION_ID()"))).scalar_one()
    assert now_id != killed


async def test_a_burst_beyond_pool_size_keeps_the_connections_it_opened(engine: AsyncEngine) -> None:
    """pool_size 1 allows two at once; the second is kept after the burst, not closed on its return
    (each burst would otherwise pay a connect, its handshake and three SETs again)."""
    async with engine.connect() as first, engine.connect() as second:
        opened = {(await c.execute(text("SELECT CONNECTION_ID()"))).scalar_one() for c in (first, second)}
    async with engine.connect() as first, engine.connect() as second:
        again = {(await c.execute(text("SELECT CONNECTION_ID()"))).scalar_one() for c in (first, second)}
    assert len(opened) == 2 and again == opened
