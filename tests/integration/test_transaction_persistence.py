"""TransactionRepository through the unit of work, on MariaDB and SQLite."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from application.errors import DuplicateIdempotencyKey
from application.payments.create_once import Created, create_once
from domain.payments.status import TransactionStatus
from domain.payments.transaction import Transaction
from domain.shared.errors import ConcurrentModification
from domain.shared.ids import UserId
from persistence.engine import create_engine
from persistence.tables import audit_logs, domain_events, transactions
from persistence.unit_of_work import SqlUnitOfWork
from tests.integration.ledger_helpers import insert_user
from tests.integration.payments_helpers import deposit_key, new_deposit, stk_request

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def pushed_deposit(engine: AsyncEngine, checkout_request_id: str) -> tuple[Transaction, Transaction]:
    """A new deposit stored, then its STK push's answer: (as created, as pushed)."""
    user_id = await insert_user(engine)
    tx = new_deposit(user_id, deposit_key(user_id))
    async with SqlUnitOfWork(engine) as uow:
        await uow.transactions.add(tx)
        await uow.commit()
    async with SqlUnitOfWork(engine) as uow:
        pushed = await uow.transactions.get_for_update(tx.id)
        assert pushed is not None
        pushed.stk_push_sent(stk_request(pushed, checkout_request_id))
        await uow.transactions.save(pushed)
        await uow.commit()
    return tx, pushed


async def test_a_deposit_round_trips_with_its_evidence_events_and_audit(engine: AsyncEngine) -> None:
    tx, loaded = await pushed_deposit(engine, "ws_CO_191220191020363925")

    async with SqlUnitOfWork(engine) as uow:
        found = await uow.transactions.find_by_checkout_request_id("ws_CO_191220191020363925")
    assert found is not None
    assert (found.id, found.status, found.version) == (
        tx.id,
        TransactionStatus.AWAITING_MPESA,
        loaded.version,
    )
    assert found.amount == tx.amount and found.locked_rate == tx.locked_rate
    assert found.mpesa_request == loaded.mpesa_request

    async with engine.connect() as connection:
        events = (await connection.execute(select(domain_events).order_by(domain_events.c.id))).all()
        audited = (await connection.execute(select(audit_logs.c.action))).scalars().all()
    types = [e.event_type for e in events]
    assert types[:2] == ["TransactionCreated", "DepositInitiated"]
    assert "TransactionStatusChanged" in types
    assert {e.stream for e in events} == {"penpay.payments"}
    assert [json.loads(e.payload)["version"] for e in events] == sorted(
        json.loads(e.payload)["version"] for e in events
    )
    assert sorted(audited) == sorted(types)  # every payments event is a financial action


async def test_of_two_writers_that_read_the_same_version_only_the_first_may_save(
    fresh_mariadb_url: str,
) -> None:
    # MariaDB only: SQLite's BEGIN IMMEDIATE never lets two writers hold a copy at once.
    engine = create_engine(fresh_mariadb_url)
    try:
        user_id = await insert_user(engine)
        tx = new_deposit(user_id, deposit_key(user_id))
        async with SqlUnitOfWork(engine) as uow:
            await uow.transactions.add(tx)
            await uow.commit()

        async with SqlUnitOfWork(engine) as slow, SqlUnitOfWork(engine) as fast:
            slow_copy = await slow.transactions.get(tx.id)  # plain read: no lock taken
            fast_copy = await fast.transactions.get(tx.id)
            assert slow_copy is not None and fast_copy is not None
            fast_copy.fail("customer changed their mind")
            await fast.transactions.save(fast_copy)
            await fast.commit()

            slow_copy.stk_push_sent(stk_request(slow_copy, "ws_CO_stale"))
            with pytest.raises(ConcurrentModification):
                await slow.transactions.save(slow_copy)

        async with SqlUnitOfWork(engine) as uow:
            final = await uow.transactions.get(tx.id)
        assert final is not None and final.status is TransactionStatus.FAILED
    finally:
        await engine.dispose()


async def test_a_second_insert_with_the_same_idempotency_key_is_refused(engine: AsyncEngine) -> None:
    user_id = await insert_user(engine)
    key = deposit_key(user_id)
    async with SqlUnitOfWork(engine) as uow:
        await uow.transactions.add(new_deposit(user_id, key))
        await uow.commit()

    with pytest.raises(DuplicateIdempotencyKey):
        async with SqlUnitOfWork(engine) as uow:
            await uow.transactions.add(new_deposit(user_id, key))


class ReadersMeetUnitOfWork(SqlUnitOfWork):
    """A real unit of work whose first idempotency lookup in each racing task waits until
    every racer has looked, so all find nothing and all try to insert: the worst
    interleaving, on every run."""

    def __init__(self, engine: AsyncEngine, barrier: asyncio.Barrier, met: set[asyncio.Task[object]]) -> None:
        super().__init__(engine)
        self._barrier, self._met = barrier, met

    async def __aenter__(self) -> ReadersMeetUnitOfWork:
        await super().__aenter__()
        real_lookup = self.transactions.find_by_idempotency_key

        async def lookup_then_meet(user_id: UserId, key_hash: str) -> Transaction | None:
            found = await real_lookup(user_id, key_hash)
            task = asyncio.current_task()
            assert task is not None
            if task not in self._met:
                self._met.add(task)
                await asyncio.wait_for(self._barrier.wait(), timeout=10)
            return found

        self.transactions.find_by_idempotency_key = lookup_then_meet  # type: ignore[method-assign]
        return self


async def test_requests_racing_with_one_idempotency_key_create_one_transaction_and_all_see_it(
    fresh_mariadb_url: str,
) -> None:
    engine = create_engine(fresh_mariadb_url, pool_size=12)
    try:
        user_id = await insert_user(engine)
        key = deposit_key(user_id, "double-click")
        racers = 10
        barrier, met = asyncio.Barrier(racers), set[asyncio.Task[object]]()

        async def request() -> Created:
            return await create_once(
                lambda: ReadersMeetUnitOfWork(engine, barrier, met),
                user_id=user_id,
                key_hash=key.hash_hex,
                build=lambda: new_deposit(user_id, key),
            )

        results = await asyncio.gather(*(request() for _ in range(racers)))

        assert sum(r.created for r in results) == 1
        assert len({r.transaction.id for r in results}) == 1
        async with engine.connect() as connection:
            stored = (await connection.execute(select(func.count()).select_from(transactions))).scalar_one()
        assert stored == 1
    finally:
        await engine.dispose()


async def test_a_credit_saves_its_evidence_in_the_status_update_and_inserts_the_transfer(
    engine: AsyncEngine,
) -> None:
    """The credit changes the status and the M-Pesa evidence and adds the transfer's intent: on
    MariaDB one multi-table UPDATE (the version guarding both rows) and the new row's INSERT; a
    save from a stale version changes nothing."""
    tx, _ = await pushed_deposit(engine, "ws_CO_CREDIT")

    def credit(t: Transaction) -> None:
        t.mpesa_confirmed(mpesa_receipt_number="RKT1CREDIT", amount=t.amount, raw_callback="{}")
        t.deriv_transfer_sent()

    async with SqlUnitOfWork(engine) as uow:
        stale = await uow.transactions.get(tx.id)
    assert stale is not None
    sent: list[str] = []

    def on_execute(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(statement.split(None, 1)[0].upper())

    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        async with SqlUnitOfWork(engine) as uow:
            credited = await uow.transactions.get_for_update(tx.id)
            assert credited is not None
            credit(credited)
            sent.clear()
            await uow.transactions.save(credited)
            saved = list(sent)
            await uow.commit()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", on_execute)
    if engine.dialect.name in ("mysql", "mariadb"):
        assert saved.count("UPDATE") == 1 and "INSERT" in saved, saved

    async with SqlUnitOfWork(engine) as uow:
        found = await uow.transactions.get(tx.id)
    assert found is not None and found.status is TransactionStatus.DERIV_TRANSFER_SENT
    assert found.mpesa_request is not None and found.mpesa_request.mpesa_receipt_number == "RKT1CREDIT"
    assert found.deriv_transfer is not None

    with pytest.raises(ConcurrentModification):
        async with SqlUnitOfWork(engine) as uow:
            uow.transactions.resume(stale)
            credit(stale)
            await uow.transactions.save(stale)
            await uow.commit()
