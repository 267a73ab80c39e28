"""The engine's pooled connections on MariaDB: no ping per checkout, and a connection the server
closed (a restart, KILL, wait_timeout) is replaced when a unit of work's first statement finds it
dead, and that statement sent again (persistence.engine.RetryingConnection)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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


_PREPARED = text("SELECT CONNECTION_ID() + :n")


async def _statement_counts(engine: AsyncEngine, runs: int) -> tuple[int, int]:
    """Run _PREPARED `runs` times on one connection: (prepares, prepared executions) it cost there,
    the SHOW that reads them included (a statement of the cache too: its second run executes it)."""

    async def counts(connection: AsyncConnection) -> tuple[int, int]:
        rows = await connection.execute(
            text("SHOW SESSION STATUS WHERE Variable_name IN ('Com_stmt_prepare', 'Com_stmt_execute')")
        )
        found = {str(name): int(value) for name, value in rows}
        return found["Com_stmt_prepare"], found["Com_stmt_execute"]

    async with engine.connect() as connection:
        prepares, executions = await counts(connection)
        for n in range(runs):
            await connection.execute(_PREPARED, {"n": n})
        after = await counts(connection)
    return after[0] - prepares, after[1] - executions


@pytest.mark.skipif(databases.MYSQL_DRIVER != "asyncmy", reason="asyncmy's statement cache")
async def test_a_statement_met_again_is_executed_prepared(engine: AsyncEngine) -> None:
    assert await _statement_counts(engine, 3) == (1, 3 + 1)  # prepared once, then executed in binary
    assert await _statement_counts(engine, 2) == (0, 2 + 1)  # the connection keeps it across checkouts


@pytest.mark.skipif(databases.MYSQL_DRIVER != "asyncmy", reason="asyncmy's statement cache")
async def test_the_database_url_turns_the_statement_cache_off(mariadb_url: str) -> None:
    engine = create_engine(f"{mariadb_url}?stmt_cache_size=0", pool_size=1)
    try:
        assert await _statement_counts(engine, 3) == (0, 0)  # every statement sent as text
    finally:
        await engine.dispose()


async def test_a_dead_connection_is_replaced_under_a_prepared_statement(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        killed = (await connection.execute(_PREPARED, {"n": 0})).scalar_one()
        await connection.execute(_PREPARED, {"n": 0})  # now prepared on this connection
    _kill(killed)
    async with SqlUnitOfWork(engine) as uow:  # the statement the dead connection had prepared
        now_id = (await uow.connection.execute(_PREPARED, {"n": 0})).scalar_one()
    assert now_id != killed
