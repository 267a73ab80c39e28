"""Races on MariaDB (InnoDB, REPEATABLE READ): two writers, one account; many requests, one key.

These fail if row locking is removed from the ledger path (SELECT ... FOR UPDATE in
persistence/ledger_repository.py) or if the idempotency uniqueness is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from application.ledger import book
from domain.shared.clock import FixedClock
from domain.shared.errors import ConcurrentModification
from domain.wallet.account_kind import AccountKind
from domain.wallet.errors import Overdraft
from domain.wallet.ledger_entry import credit, debit
from domain.wallet.money import Currency, Money
from domain.wallet.posting import Posting
from persistence.engine import create_engine
from persistence.idempotency_store import ClaimOutcome, SqlIdempotencyStore
from persistence.tables import ledger_entries
from persistence.unit_of_work import SqlUnitOfWork
from tests.integration.ledger_helpers import (
    balance_of,
    fund,
    insert_user,
    net_by_currency,
    pay_out,
    wallet_and_float,
)

pytestmark = pytest.mark.integration

KES, WALLET = Currency.KES, AccountKind.USER_WALLET

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # the idempotency store's clock: claims are as of this instant


@pytest.fixture
async def engine(fresh_mariadb_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_mariadb_url, pool_size=16)
    yield engine
    await engine.dispose()


async def test_concurrent_debits_of_one_account_serialise_never_overdraw_and_lose_no_update(
    engine: AsyncEngine,
) -> None:
    wallet, float_account = await wallet_and_float(engine)
    await fund(engine, wallet, float_account, 100_00)
    start = asyncio.Event()

    async def debit_30() -> str:
        await start.wait()
        try:
            async with SqlUnitOfWork(engine) as uow:
                await book(uow, pay_out(wallet, float_account, 30_00))
                await asyncio.sleep(0.01)  # hold the transaction open so the writers overlap
                await uow.commit()
            return "booked"
        except Overdraft:
            return "overdraft"
        except ConcurrentModification:
            return "conflict"

    tasks = [asyncio.create_task(debit_30()) for _ in range(10)]
    start.set()
    outcomes = await asyncio.gather(*tasks)

    # With the account row locked, writers queue behind each other: each one sees the
    # balance the previous one left, so 3 of 10 fit and 7 are refused as overdrafts.
    # Without the lock they read the same balance: conflicts, or worse, a lost update.
    assert sorted(outcomes) == ["booked"] * 3 + ["overdraft"] * 7
    assert await balance_of(engine, wallet) == 10_00
    assert await balance_of(engine, float_account) == 10_00
    assert await net_by_currency(engine) == {"KES": 0}


async def test_two_writers_moving_money_both_ways_between_two_accounts_do_not_deadlock(
    engine: AsyncEngine,
) -> None:
    wallet, float_account = await wallet_and_float(engine)
    await fund(engine, wallet, float_account, 1_000_00)

    async def move(minor: int, outward: bool) -> None:
        async with SqlUnitOfWork(engine) as uow:
            posting = (
                pay_out(wallet, float_account, minor) if outward else pay_out(float_account, wallet, minor)
            )
            await book(uow, posting)
            await uow.commit()

    await asyncio.gather(*(move(1_00, outward=i % 2 == 0) for i in range(40)))

    assert await balance_of(engine, wallet) == 1_000_00
    assert await net_by_currency(engine) == {"KES": 0}


async def test_one_idempotency_key_raced_by_many_requests_is_claimed_exactly_once(
    engine: AsyncEngine,
) -> None:
    store = SqlIdempotencyStore(engine, FixedClock(NOW))
    start = asyncio.Event()

    async def claim() -> ClaimOutcome:
        await start.wait()
        return (await store.claim(scope="user-1:deposit", key_hash="a" * 64, fingerprint="f" * 64)).outcome

    tasks = [asyncio.create_task(claim()) for _ in range(8)]
    start.set()
    outcomes = await asyncio.gather(*tasks)

    assert sorted(outcomes) == [ClaimOutcome.CLAIMED] + [ClaimOutcome.IN_FLIGHT] * 7


async def test_a_repeat_after_completion_replays_the_first_response_and_a_different_request_is_refused(
    engine: AsyncEngine,
) -> None:
    store = SqlIdempotencyStore(engine, FixedClock(NOW))
    key = {"scope": "user-2:deposit", "key_hash": "b" * 64}
    assert (await store.claim(**key, fingerprint="1" * 64)).outcome is ClaimOutcome.CLAIMED

    async with SqlUnitOfWork(engine) as uow:
        await uow.complete_idempotency_key(**key, response_code=0, response_body=b'{"transaction_id":"t-1"}')
        await uow.commit()

    replay = await store.claim(**key, fingerprint="1" * 64)
    assert (replay.outcome, replay.response_code, replay.response_body) == (
        ClaimOutcome.REPLAY,
        0,
        b'{"transaction_id":"t-1"}',
    )
    assert (await store.claim(**key, fingerprint="2" * 64)).outcome is ClaimOutcome.MISMATCH


async def test_a_wallet_another_transaction_created_after_our_snapshot_can_be_booked(
    engine: AsyncEngine,
) -> None:
    """Two first deposits of one user: both miss the wallet, one creates it, the other's insert
    meets the unique code and reads the committed row. That account, committed after the second's
    snapshot, must be bookable there: describe_accounts' plain read cannot see it (the e2e bench
    met UnknownLedgerAccount 25 times in 100 deposits, each put right by the sweeper seconds later),
    and neither may deadlock on it (both inserts inside the booking transactions did)."""
    user_id = await insert_user(engine)
    async with SqlUnitOfWork(engine) as late:
        _, float_account = await wallet_and_float(engine)  # committed: the float is known
        await late.ledger.describe_accounts([float_account.id])  # the snapshot starts here
        async with SqlUnitOfWork(engine) as first:
            await first.ledger.get_or_create_account(
                kind=AccountKind.USER_WALLET, currency=KES, user_id=user_id
            )
            await first.commit()
        wallet_id = await late.ledger.account_id(kind=WALLET, currency=KES, user_id=user_id)
        amount = Money(5_00, KES)
        await book(
            late,
            Posting.create(
                lines=[debit(float_account.id, amount), credit(wallet_id, amount)], description="x"
            ),
        )
        await late.commit()
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(ledger_entries.c.amount_cents).where(ledger_entries.c.account_id == wallet_id.value)
        )
        assert [int(r.amount_cents) for r in rows] == [5_00]
