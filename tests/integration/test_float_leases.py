"""Float leases (persistence/float_leases.py): money out of a no-overdraft float booked within an
allowance a process took on its headroom, without the float's row; the floor kept whoever books.
MariaDB only (SQLite has one writer: no queue on the float to avoid, and no leases)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from application.ledger import book, book_all
from domain.wallet.account_kind import AccountKind
from domain.wallet.errors import Overdraft
from domain.wallet.ledger_account import LedgerAccount
from persistence import float_leases
from persistence.engine import create_engine
from persistence.tables import float_leases as leases_table
from persistence.tables import ledger_accounts, ledger_balance_deltas
from persistence.unit_of_work import SqlUnitOfWork
from tests.integration.ledger_helpers import fund, pay_out, wallet_and_float

pytestmark = pytest.mark.integration

FLOORS = {AccountKind.MPESA_FLOAT: 20_00}
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # when a test retires a lease itself


@pytest.fixture
async def engine(fresh_mariadb_url: str) -> AsyncIterator[AsyncEngine]:
    """A database of the test's own: the float is the one system account of its kind."""
    engine = create_engine(fresh_mariadb_url)
    yield engine
    await engine.dispose()


async def another_process(engine: AsyncEngine) -> AsyncEngine:
    """An engine of its own: a process whose leases are its own (they are held per engine)."""
    return create_engine(engine.url.render_as_string(hide_password=False))


async def float_row(engine: AsyncEngine, account: LedgerAccount) -> tuple[int, int, int]:
    """(balance_cents, leased_cents, version) as committed."""
    a = ledger_accounts
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(a.c.balance_cents, a.c.leased_cents, a.c.version).where(a.c.id == account.id.value)
            )
        ).one()
    return int(row.balance_cents), int(row.leased_cents), int(row.version)


async def pending(engine: AsyncEngine, account: LedgerAccount) -> int:
    d = ledger_balance_deltas
    async with engine.connect() as connection:
        total = await connection.scalar(
            select(func.coalesce(func.sum(d.c.delta_cents), 0)).where(d.c.account_id == account.id.value)
        )
    return int(total or 0)


async def unretired(engine: AsyncEngine) -> list[tuple[object, int]]:
    t = leases_table
    async with engine.connect() as connection:
        rows = await connection.execute(select(t.c.id, t.c.allowance_cents).where(t.c.retired_at.is_(None)))
        return [(row.id, int(row.allowance_cents)) for row in rows]


async def funded_float(engine: AsyncEngine, minor: int) -> tuple[LedgerAccount, LedgerAccount]:
    """A wallet and the float holding `minor` (paid in: pending, which a lease's headroom counts)."""
    wallet, float_account = await wallet_and_float(engine)
    await fund(engine, wallet, float_account, minor)
    return wallet, float_account


async def pay_out_within_floors(
    engine: AsyncEngine, wallet: LedgerAccount, float_: LedgerAccount, minor: int
) -> None:
    async with SqlUnitOfWork(engine) as uow:
        held = await book(uow, pay_out(wallet, float_, minor), keep_above=FLOORS)
        assert float_.id not in held
        await uow.commit()


async def test_money_out_within_a_lease_leaves_the_float_s_row_alone(engine: AsyncEngine) -> None:
    wallet, float_ = await funded_float(engine, 1_000_00)
    await pay_out_within_floors(engine, wallet, float_, 10_00)  # takes the lease
    balance, leased, version = await float_row(engine, float_)
    [(_, allowance)] = await unretired(engine)
    # a quarter of the headroom above the floor: (1,000.00 pending in - 20.00) / 4
    assert leased == allowance == 245_00

    async with engine.connect() as holder:  # someone holds the float's row for the whole time
        await holder.execute(
            text("SELECT id FROM ledger_accounts WHERE id = :id FOR UPDATE"), {"id": float_.id.value.bytes}
        )
        # sixteen payouts at once, none waiting on it (the lock wait timeout would be 50 s)
        await asyncio.wait_for(
            asyncio.gather(*(pay_out_within_floors(engine, wallet, float_, 5_00) for _ in range(16))), 20
        )
        await holder.rollback()

    assert await float_row(engine, float_) == (balance, leased, version)  # not touched
    assert await pending(engine, float_) == 1_000_00 - 10_00 - 16 * 5_00
    assert len(await unretired(engine)) == 1  # the one lease: no booking took its own


async def test_retiring_a_lease_rolls_the_float_in_and_gives_its_allowance_back(engine: AsyncEngine) -> None:
    wallet, float_ = await funded_float(engine, 1_000_00)
    await pay_out_within_floors(engine, wallet, float_, 10_00)
    [(lease_id, _)] = await unretired(engine)

    assert await float_leases.retire(engine, lease_id, NOW)
    assert not await float_leases.retire(engine, lease_id, NOW)  # once

    balance, leased, _ = await float_row(engine, float_)
    assert (balance, leased) == (990_00, 0)
    assert await pending(engine, float_) == 0
    assert await unretired(engine) == []


async def test_retiring_a_lease_waits_for_the_bookings_under_it(engine: AsyncEngine) -> None:
    """The safety of the rule: once a lease is retired nothing more is booked under it, and what
    was booked is in the balance rolled in, so the allowance given back is not spent twice."""
    wallet, float_ = await funded_float(engine, 1_000_00)
    await pay_out_within_floors(engine, wallet, float_, 10_00)
    [(lease_id, _)] = await unretired(engine)

    async with SqlUnitOfWork(engine) as uow:  # a booking under the lease, not committed yet
        await book(uow, pay_out(wallet, float_, 30_00), keep_above=FLOORS)
        retiring = asyncio.create_task(float_leases.retire(engine, lease_id, NOW))
        await asyncio.sleep(0.5)
        assert not retiring.done()  # its guard holds the lease's row
        await uow.commit()
    assert await asyncio.wait_for(retiring, 10)

    balance, leased, _ = await float_row(engine, float_)
    assert (balance, leased) == (1_000_00 - 10_00 - 30_00, 0)  # the booking rolled in with it
    assert await pending(engine, float_) == 0


async def test_a_lease_s_guard_holds_its_retirement_off_before_anything_is_written(
    engine: AsyncEngine,
) -> None:
    wallet, float_ = await funded_float(engine, 1_000_00)
    await pay_out_within_floors(engine, wallet, float_, 10_00)
    [(lease_id, _)] = await unretired(engine)

    async with SqlUnitOfWork(engine) as uow:
        assert await uow.ledger.lease(float_.id, -5_00, 20_00)  # taken from it, nothing written yet
        retiring = asyncio.create_task(float_leases.retire(engine, lease_id, NOW))
        await asyncio.sleep(0.5)
        assert not retiring.done()
        await uow.commit()
    assert await asyncio.wait_for(retiring, 10)


async def test_a_lease_retired_by_another_process_is_not_booked_under(engine: AsyncEngine) -> None:
    wallet, float_ = await funded_float(engine, 1_000_00)
    await pay_out_within_floors(engine, wallet, float_, 10_00)
    [(lease_id, _)] = await unretired(engine)
    other = await another_process(engine)
    try:
        assert await float_leases.retire(other, lease_id, NOW)  # as if abandoned
    finally:
        await other.dispose()

    async with SqlUnitOfWork(engine) as uow:  # its guard finds it retired: the float's own way
        held = await book(uow, pay_out(wallet, float_, 10_00), keep_above=FLOORS)
        assert float_.id in held
        await uow.commit()
    assert (await float_row(engine, float_))[:2] == (980_00, 0)

    await pay_out_within_floors(engine, wallet, float_, 10_00)  # the next takes a new lease
    [(new_lease, _)] = await unretired(engine)
    assert new_lease != lease_id
    assert await pending(engine, float_) == -10_00


async def test_money_out_of_the_float_outside_every_lease_counts_them_spent(engine: AsyncEngine) -> None:
    wallet, float_ = await funded_float(engine, 1_000_00)
    await pay_out_within_floors(engine, wallet, float_, 10_00)
    await float_leases.retire_held(engine, NOW)  # rolled in: balance 990.00, nothing leased
    await pay_out_within_floors(engine, wallet, float_, 10_00)  # a new lease: (990.00 - 20.00) / 4
    balance, leased, _ = await float_row(engine, float_)
    assert (balance, leased) == (990_00, 242_50)  # its payout pending: 980.00 in all
    spare = balance - leased  # what the lease may book (242.50, 10.00 of it booked) is spent

    async with SqlUnitOfWork(engine) as uow:  # no floors: the float held, locked
        with pytest.raises(Overdraft):
            await book(uow, pay_out(wallet, float_, spare + 1))
    async with SqlUnitOfWork(engine) as uow:
        held = await book(uow, pay_out(wallet, float_, spare))
        assert float_.id in held
        await uow.commit()
    assert (await float_row(engine, float_))[:2] == (leased, leased)


async def test_a_lease_long_past_its_expiry_is_retired_by_anyone(engine: AsyncEngine) -> None:
    wallet, float_ = await funded_float(engine, 1_000_00)
    other = await another_process(engine)
    try:
        async with SqlUnitOfWork(other) as uow:  # a process that dies holding its lease
            await book_all(uow, [pay_out(wallet, float_, 10_00)], keep_above=FLOORS)
            await uow.commit()
    finally:
        await other.dispose()
    [(lease_id, _)] = await unretired(engine)
    async with engine.connect() as connection:
        expires: datetime = (
            await connection.execute(select(leases_table.c.expires_at).where(leases_table.c.id == lease_id))
        ).scalar_one()

    assert await float_leases.retire_abandoned(engine, expires + float_leases.ABANDONED_AFTER) == 0
    later = expires + float_leases.ABANDONED_AFTER + timedelta(seconds=1)
    assert await float_leases.retire_abandoned(engine, later) == 1
    assert await unretired(engine) == []
    assert (await float_row(engine, float_))[:2] == (990_00, 0)


async def test_money_written_last_outside_every_lease_counts_them_spent(engine: AsyncEngine) -> None:
    from domain.wallet.errors import FloorNotKept

    wallet, float_ = await funded_float(engine, 1_000_00)
    await pay_out_within_floors(engine, wallet, float_, 10_00)  # this process's lease: 245.00
    other = await another_process(engine)
    try:
        async with SqlUnitOfWork(other) as uow:  # held: the other process learns the float (989.00)
            await book(uow, pay_out(wallet, float_, 1_00))
            await uow.commit()
        balance, leased, _ = await float_row(engine, float_)
        assert (balance, leased) == (989_00, 245_00)
        # More than a lease of its own could hold ((989.00 - 245.00 - 20.00) / 4), and its guess says
        # the floor holds (989.00 - 730.00 >= 20.00): written last, where the 245.00 leased counts.
        with pytest.raises(FloorNotKept):
            async with SqlUnitOfWork(other) as uow:
                await book(uow, pay_out(wallet, float_, 730_00), keep_above=FLOORS)
                await uow.commit()
        async with SqlUnitOfWork(other) as uow:  # held now (its guess forgotten): 724.00 is spare
            await book(uow, pay_out(wallet, float_, 724_00), keep_above=FLOORS)
            await uow.commit()
    finally:
        await other.dispose()
    assert (await float_row(engine, float_))[:2] == (265_00, 245_00)


async def test_a_booking_that_spends_its_lease_and_needs_another_does_not_wait_on_itself(
    engine: AsyncEngine,
) -> None:
    wallet, float_ = await funded_float(engine, 1_000_00)
    await pay_out_within_floors(engine, wallet, float_, 10_00)  # the lease: 245.00

    async def twice() -> None:
        async with SqlUnitOfWork(engine) as uow:
            await book(uow, pay_out(wallet, float_, 200_00), keep_above=FLOORS)  # 35.00 left of it
            # a new lease for this one; the spent one is not retired now: that would wait for this
            # unit of work's own guard on it (it is left to expire)
            await book(uow, pay_out(wallet, float_, 100_00), keep_above=FLOORS)
            await uow.commit()

    await asyncio.wait_for(twice(), 20)
    assert sorted(allowance for _, allowance in await unretired(engine)) == [
        181_25,
        245_00,
    ]  # (990.00 - 245.00 - 20.00) / 4
    assert await pending(engine, float_) == 1_000_00 - 310_00


async def test_bookings_waiting_for_the_next_lease_never_drain_the_pool_its_taker_needs(
    engine: AsyncEngine, fresh_mariadb_url: str
) -> None:
    """Taking the next lease (and retiring the spent one) is a transaction of its own, on a pooled
    connection of the booking's process, while the booking holds its own. Bookings that waited for
    the taker held their connections idle: a burst of them drained the pool, and the taker's
    checkout (then every one of them) waited out the pool's 30 s (the e2e bench's stalled bursts).
    A booking that finds another one taking the next lease goes the float's own way instead."""
    small = create_engine(fresh_mariadb_url, pool_size=1)  # two connections
    try:
        wallet, float_ = await funded_float(small, 1_000_00)
        await pay_out_within_floors(small, wallet, float_, 240_00)  # the lease: 245.00, 5.00 left
        holding = asyncio.Barrier(2)

        async def booking() -> None:
            async with SqlUnitOfWork(small) as uow:  # one of the pool's two connections
                await holding.wait()  # both held before either needs the next lease
                await book(uow, pay_out(wallet, float_, 10_00), keep_above=FLOORS)
                await uow.commit()

        await asyncio.wait_for(asyncio.gather(booking(), booking()), 20)
        await float_leases.retire_held(small, NOW)
    finally:
        await small.dispose()
    balance, leased, _ = await float_row(engine, float_)
    assert balance + await pending(engine, float_) == 1_000_00 - 240_00 - 2 * 10_00
    assert leased == 0 and await unretired(engine) == []
