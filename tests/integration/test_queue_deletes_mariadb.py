"""The deletes that empty audit_pending (the sealer) and ledger_balance_deltas (the roll-up, a
booking folding an account's deltas in, a lease given back) lock the rows they delete and nothing
else: on MariaDB, `DELETE ... WHERE id IN (...)` over most of a small table was a scan that waited
for every transaction still inserting into the table and made every insert wait for it
(persistence/delete_by_ids.py). Each connection here waits one second for a row lock: a delete or
an insert that waits fails with a lock-wait timeout instead of passing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.wallet.ledger_account import LedgerAccount
from persistence.audit import AuditRecord, seal_pending, verify_chain
from persistence.engine import create_engine
from persistence.ledger_rollup import roll_up
from persistence.tables import audit_pending, ledger_balance_deltas
from tests.integration.ledger_helpers import balance_of, wallet_and_float

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
ROWS = 40  # committed rows: the list covers all of them, as a seal or a roll-up's does


@pytest.fixture
async def engine(fresh_mariadb_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_mariadb_url, pool_size=4)
    yield engine
    await engine.dispose()


async def impatient(engine: AsyncEngine) -> AsyncConnection:
    connection = await engine.connect()
    await connection.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))
    await connection.commit()
    return connection


def record(n: int) -> dict[str, object]:
    return AuditRecord(NOW, "writer", "Test", "Test", f"r-{n}", {"n": n}).pending_row()


def delta(account: LedgerAccount, n: int) -> dict[str, object]:
    return {"account_id": account.id.value, "posting_id": uuid.uuid4(), "delta_cents": n}


async def test_a_seal_neither_waits_for_nor_holds_up_a_transaction_writing_audit_records(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as setup:
        await setup.execute(insert(audit_pending), [record(n) for n in range(ROWS)])
        await setup.execute(text("ANALYZE TABLE audit_pending"))  # the optimizer knows how few rows
    writer, sealer = await impatient(engine), await impatient(engine)
    try:
        await writer.execute(insert(audit_pending), [record(ROWS)])  # in flight, not committed
        assert await seal_pending(sealer) == ROWS  # the committed ones, without waiting for it
        await writer.execute(insert(audit_pending), [record(ROWS + 1)])  # the seal not committed yet
        await sealer.commit()
        await writer.commit()
        assert await seal_pending(sealer) == 2
        await sealer.commit()
        report = await verify_chain(sealer)
        assert report.ok and (report.rows_checked, report.pending) == (ROWS + 2, 0)
    finally:
        await writer.close()
        await sealer.close()


async def test_a_roll_up_does_not_wait_for_a_booking_still_writing_deltas(fresh_mariadb_url: str) -> None:
    engine = create_engine(fresh_mariadb_url, pool_size=4)

    @event.listens_for(engine.sync_engine, "connect")
    def _impatient(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")
        cursor.close()

    try:
        wallet, _ = await wallet_and_float(engine)
        async with engine.begin() as setup:
            await setup.execute(insert(ledger_balance_deltas), [delta(wallet, n) for n in range(1, ROWS + 1)])
            await setup.execute(text("ANALYZE TABLE ledger_balance_deltas"))
        async with engine.connect() as booking:
            await booking.execute(insert(ledger_balance_deltas), [delta(wallet, ROWS + 1)])  # in flight
            assert await roll_up(engine, NOW) == ROWS  # the committed ones, without waiting for it
            await booking.commit()
        assert await balance_of(engine, wallet) == (ROWS * (ROWS + 1)) // 2 + ROWS + 1
        async with engine.connect() as connection:
            left = select(ledger_balance_deltas.c.delta_cents)
            assert list((await connection.execute(left)).scalars()) == [ROWS + 1]
    finally:
        await engine.dispose()
