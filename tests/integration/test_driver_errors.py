"""The server's error numbers reach PenPay through asyncmy, production's driver, as they did through
aiomysql: a duplicate key (1062) and a lock wait run out (1205), read by the warnings
(application.errors.failure_fields), the C2B retry on lock conflicts and the gateway journal's
batch retry (deriv_gateway.journal.group_commit), on a real MariaDB."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from application.errors import failure_fields
from deriv_gateway.journal import group_commit
from domain.shared.ids import new_uuid7
from mpesa_adapter.c2b import _lock_conflict
from persistence.engine import create_engine
from persistence.tables import idempotency_keys

pytestmark = pytest.mark.integration
AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)  # the rows' stamps: nothing here reads them


@pytest.fixture
async def engine(mariadb_url: str) -> AsyncIterator[AsyncEngine]:
    assert mariadb_url.startswith("mysql+asyncmy://")  # the tests' default driver, production's
    engine = create_engine(mariadb_url, pool_size=2)
    yield engine
    await engine.dispose()


def _key_row() -> dict[str, object]:
    return {
        "id": new_uuid7(),
        "scope": "test-driver-errors",
        "key_hash": new_uuid7().hex * 2,
        "request_fingerprint": "f" * 64,
        "status": "IN_FLIGHT",
        "created_at": AT,
        "expires_at": AT + timedelta(hours=1),
    }


async def test_a_duplicate_key_is_1062(engine: AsyncEngine) -> None:
    row = _key_row()
    async with engine.begin() as connection:
        await connection.execute(insert(idempotency_keys), row)
    with pytest.raises(IntegrityError) as refused:
        async with engine.begin() as connection:
            await connection.execute(insert(idempotency_keys), {**row, "id": new_uuid7()})

    assert failure_fields(refused.value) == {
        "error": "IntegrityError",
        "error_from": "sqlalchemy.exc",
        "db_errno": 1062,
    }
    assert refused.value.orig is not None
    assert group_commit.duplicate(refused.value.orig)  # the journal's raw connection sees the driver's


async def test_a_lock_wait_run_out_is_1205_and_may_run_again(engine: AsyncEngine) -> None:
    row = _key_row()
    async with engine.begin() as connection:
        await connection.execute(insert(idempotency_keys), row)
    locked = select(idempotency_keys.c.id).where(idempotency_keys.c.id == row["id"]).with_for_update()
    async with engine.connect() as holder, engine.connect() as waiter:
        await holder.execute(locked)  # holds the row until it rolls back
        await waiter.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))  # the server's wait
        with pytest.raises(OperationalError) as ran_out:
            await waiter.execute(locked)
        await holder.rollback()

    assert failure_fields(ran_out.value) == {
        "error": "OperationalError",
        "error_from": "sqlalchemy.exc",
        "db_errno": 1205,
    }
    assert _lock_conflict(ran_out.value)  # the C2B use cases run again
    assert group_commit.transient(ran_out.value)
    assert ran_out.value.orig is not None
    assert group_commit.transient(ran_out.value.orig)
