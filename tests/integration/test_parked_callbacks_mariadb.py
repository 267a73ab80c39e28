"""Adopting an early STK callback locks that request's parked rows only (MariaDB).

Found by the e2e bench's timelines: with few OPEN rows in `mpesa_callback_reviews` the server read the
adoption's locked read through (status, received_at), locking every OPEN row and the gaps between; two
deposits adopting at once then deadlocked, and the loser's deposit waited for the STK Query timer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from application.payments.mpesa_evidence import UNKNOWN_ID, Arrival, KeptAnswer
from domain.shared.ids import TransactionId
from persistence.callback_reviews import SqlCallbackReviews
from persistence.engine import create_engine
from persistence.unit_of_work import SqlUnitOfWork
from tests.integration.ledger_helpers import insert_user
from tests.integration.payments_helpers import deposit_key, new_deposit

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
CHECKOUTS = ("ws_CO_A", "ws_CO_B", "ws_CO_C", "ws_CO_D")


@pytest.fixture
async def engine(fresh_mariadb_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_mariadb_url)
    yield engine
    await engine.dispose()


async def _park(engine: AsyncEngine) -> TransactionId:
    user_id = await insert_user(engine)
    tx = new_deposit(user_id, deposit_key(user_id))
    async with engine.begin() as connection:
        reviews = SqlCallbackReviews(connection)
        for checkout in CHECKOUTS:
            arrival = Arrival("stk", b"{}", None, T0)
            await reviews.keep(KeptAnswer(arrival, UNKNOWN_ID, "no such CheckoutRequestID", checkout, None))
    async with SqlUnitOfWork(engine) as uow:
        await uow.transactions.add(tx)
        await uow.commit()
    async with engine.begin() as connection:
        # as under load: most rows already adopted, the few OPEN ones those in flight
        reviews = SqlCallbackReviews(connection)
        for n in range(60):
            arrival = Arrival("stk", b"{}", None, T0)
            await reviews.keep(
                KeptAnswer(arrival, UNKNOWN_ID, "no such CheckoutRequestID", f"ws_CO_{n}", None)
            )
        await connection.execute(
            text(
                "UPDATE mpesa_callback_reviews SET status = 'ADOPTED' WHERE correlation_id LIKE 'ws_CO_%%'"
                " AND correlation_id NOT IN ('ws_CO_A', 'ws_CO_B', 'ws_CO_C', 'ws_CO_D')"
            )
        )
    return tx.id


async def test_two_adoptions_of_different_requests_do_not_wait_for_each_other(engine: AsyncEngine) -> None:
    tx_id = await _park(engine)
    async with engine.connect() as first, engine.connect() as second:
        await second.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))  # autobegins
        holding = await SqlCallbackReviews(first).lock_parked("stk", "ws_CO_B")
        assert len(holding) == 1
        # A second adoption, of another request, while the first holds its rows: neither its
        # locked read nor its mark may wait (a wait here runs out after 1 s: OperationalError 1205).
        other = SqlCallbackReviews(second)
        (parked,) = await other.lock_parked("stk", "ws_CO_D")
        await other.mark_adopted(parked.review_id, tx_id, now=T0)
        await second.commit()
        await SqlCallbackReviews(first).mark_adopted(holding[0].review_id, tx_id, now=T0)
        await first.commit()
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT correlation_id, status FROM mpesa_callback_reviews"))
        statuses: dict[str, str] = {str(r.correlation_id): str(r.status) for r in rows}
    assert {k: v for k, v in statuses.items() if k in CHECKOUTS} == {
        "ws_CO_A": "OPEN",
        "ws_CO_B": "ADOPTED",
        "ws_CO_C": "OPEN",
        "ws_CO_D": "ADOPTED",
    }


async def test_the_locked_read_names_its_index_whatever_the_statistics_say(engine: AsyncEngine) -> None:
    """The test above passes on whichever plan this server picks here; the bench's server, on a new
    table's statistics, picked (status, received_at) for the ORDER BY. The statement itself must not
    leave that choice to the optimizer."""
    from persistence.callback_reviews import _PARKED, CORRELATION_INDEX

    sql = str(_PARKED.compile(dialect=engine.dialect))
    assert f"FORCE INDEX ({CORRELATION_INDEX})" in sql and sql.rstrip().endswith("FOR UPDATE")
