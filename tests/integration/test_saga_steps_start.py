"""The saga-step journal's one-statement start (persistence/saga_steps.py, built once with its values
bound at execution), on MariaDB and SQLite: the first attempt inserted, each start after it counts
one more, a deferral gives its attempt back and the next start clears it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.engine import create_engine
from persistence.unit_of_work import SqlUnitOfWork
from tests.integration.ledger_helpers import insert_user
from tests.integration.payments_helpers import deposit_key, new_deposit

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def test_start_counts_attempts_per_step_and_clears_a_deferral(engine: AsyncEngine) -> None:
    user_id = await insert_user(engine)
    tx = new_deposit(user_id, deposit_key(user_id))
    async with SqlUnitOfWork(engine) as uow:
        await uow.transactions.add(tx)
        await uow.commit()

    async with SqlUnitOfWork(engine) as uow:
        await uow.saga_steps.start(tx.id, "stk_push", now=T0)
        await uow.saga_steps.start(tx.id, "deriv_transfer", now=T0, detail="x" * 300)
        await uow.commit()
    async with SqlUnitOfWork(engine) as uow:
        first = await uow.saga_steps.get(tx.id)
        await uow.saga_steps.defer(
            tx.id,
            "deriv_transfer",
            now=T0 + timedelta(seconds=1),
            until=T0 + timedelta(minutes=1),
            detail="later",
        )
        await uow.saga_steps.start(tx.id, "stk_push", now=T0 + timedelta(seconds=2), detail="again")
        await uow.commit()
    async with SqlUnitOfWork(engine) as uow:
        deferred = await uow.saga_steps.get(tx.id)
        await uow.saga_steps.start(tx.id, "deriv_transfer", now=T0 + timedelta(seconds=3))
        await uow.commit()
    async with SqlUnitOfWork(engine) as uow:
        last = await uow.saga_steps.get(tx.id)

    assert first["stk_push"].attempts == 1 and first["stk_push"].detail is None
    assert first["deriv_transfer"].detail == "x" * 255
    assert _naive(first["stk_push"].started_at) == _naive(T0) == _naive(first["stk_push"].updated_at)
    assert deferred["stk_push"].attempts == 2 and deferred["stk_push"].detail == "again"
    assert _naive(deferred["stk_push"].started_at) == _naive(T0)  # the first attempt's, kept
    assert _naive(deferred["stk_push"].updated_at) == _naive(T0 + timedelta(seconds=2))
    assert deferred["deriv_transfer"].attempts == 0 and deferred["deriv_transfer"].retry_at is not None
    assert last["deriv_transfer"].attempts == 1 and last["deriv_transfer"].retry_at is None
    assert last["deriv_transfer"].detail is None


def _naive(at: datetime) -> datetime:
    """MariaDB hands DATETIME back without a zone, SQLite as stored: compared as UTC wall times."""
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at
