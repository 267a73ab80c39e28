"""A float money leaves, booked with floors (book_all's keep_above): not locked during the booking,
its change the unit of work's last statement, conditional on the floor; a wrong guess commits
nothing and the next booking locks the float."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from application.ledger import book
from domain.wallet.account_kind import AccountKind
from domain.wallet.errors import FloorNotKept, Overdraft
from domain.wallet.ledger_account import LedgerAccount
from persistence.engine import create_engine
from persistence.tables import domain_events, ledger_accounts, ledger_postings
from persistence.unit_of_work import SqlUnitOfWork
from tests.integration.ledger_helpers import fund, pay_out, wallet_and_float

pytestmark = pytest.mark.integration

FLOORS = {AccountKind.MPESA_FLOAT: 20_00}


@pytest.fixture(autouse=True)
def no_leases(monkeypatch: pytest.MonkeyPatch) -> None:
    """The float's own way, which a booking takes when no lease covers it (tests/integration/
    test_float_leases.py: within a lease)."""
    from persistence import float_leases

    monkeypatch.setattr(float_leases, "CAPS", {})


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def stored(engine: AsyncEngine, account: LedgerAccount) -> tuple[int, int]:
    """(balance_cents, version) as committed."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(ledger_accounts.c.balance_cents, ledger_accounts.c.version).where(
                    ledger_accounts.c.id == account.id.value
                )
            )
        ).one()
    return int(row.balance_cents), int(row.version)


async def postings(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(ledger_postings))).scalar_one())


async def known_float(engine: AsyncEngine, minor: int) -> tuple[LedgerAccount, LedgerAccount]:
    """A wallet and the float funded with `minor`, and a first payout of 10.00 booked with the
    floors: the float locked (this process had not read it), so now known to it."""
    wallet, float_account = await wallet_and_float(engine)
    await fund(engine, wallet, float_account, minor)
    async with SqlUnitOfWork(engine) as uow:
        held = await book(uow, pay_out(wallet, float_account, 10_00), keep_above=FLOORS)
        await uow.commit()
    assert float_account.id in held  # unknown to this process: locked and read
    return wallet, float_account


async def test_a_float_kept_above_its_floor_is_not_held_and_changes_at_the_commit(
    engine: AsyncEngine,
) -> None:
    wallet, float_account = await known_float(engine, 100_00)
    before, version = await stored(engine, float_account)
    assert before == 90_00

    async with SqlUnitOfWork(engine) as uow:
        held = await book(uow, pay_out(wallet, float_account, 30_00), keep_above=FLOORS)
        assert set(held) == {wallet.id}  # the float left out: not read, not locked
        if engine.dialect.name != "sqlite":
            # another process may lock the float while this booking is under way
            async with engine.connect() as other:
                await other.execute(
                    text("SELECT id FROM ledger_accounts WHERE id = :id FOR UPDATE NOWAIT"),
                    {"id": float_account.id.value.bytes},
                )
                await other.rollback()
            assert await stored(engine, float_account) == (90_00, version)
        await uow.commit()

    assert await stored(engine, float_account) == (60_00, version + 1)
    # its balance after is not known to tell: no BalanceChanged (the first payout, held, told one)
    assert await events_of(engine, float_account) == 1


async def events_of(engine: AsyncEngine, account: LedgerAccount) -> int:
    async with engine.connect() as connection:
        return int(
            (
                await connection.execute(
                    select(func.count()).where(domain_events.c.aggregate_id == str(account.id))
                )
            ).scalar_one()
        )


async def test_a_change_that_would_go_below_the_floor_is_booked_with_the_float_held(
    engine: AsyncEngine,
) -> None:
    wallet, float_account = await known_float(engine, 100_00)
    async with SqlUnitOfWork(engine) as uow:
        held = await book(uow, pay_out(wallet, float_account, 75_00), keep_above=FLOORS)  # 90 -> 15 < 20
        await uow.commit()
    assert float_account.id in held  # held, so the caller can see it crossed (FloatLow)
    assert held[float_account.id].balance_minor == 15_00


async def test_a_float_another_process_emptied_fails_the_commit_whole_then_is_held(
    fresh_mariadb_url: str,
) -> None:
    engine, elsewhere = create_engine(fresh_mariadb_url), create_engine(fresh_mariadb_url)
    try:
        wallet, float_account = await known_float(engine, 100_00)  # this process: 90.00
        async with SqlUnitOfWork(elsewhere) as uow:  # another process pays 75.00 out of it
            await book(uow, pay_out(wallet, float_account, 75_00), keep_above=FLOORS)
            await uow.commit()
        before, count = await stored(engine, float_account), await postings(engine)

        with pytest.raises(FloorNotKept):
            async with SqlUnitOfWork(engine) as uow:
                held = await book(uow, pay_out(wallet, float_account, 10_00), keep_above=FLOORS)
                assert float_account.id not in held  # guessed on 90.00: booked unlocked
                await uow.commit()
        assert await stored(engine, float_account) == before  # nothing of it committed
        assert await postings(engine) == count

        async with SqlUnitOfWork(engine) as uow:  # the guess is gone: held, read, refused
            with pytest.raises(Overdraft):
                await book(uow, pay_out(wallet, float_account, 15_01), keep_above=FLOORS)
        async with SqlUnitOfWork(engine) as uow:
            held = await book(uow, pay_out(wallet, float_account, 10_00), keep_above=FLOORS)
            await uow.commit()
        assert held[float_account.id].balance_minor == 5_00
    finally:
        await engine.dispose()
        await elsewhere.dispose()


async def test_without_floors_the_float_is_held_as_ever(fresh_mariadb_url: str) -> None:
    engine = create_engine(fresh_mariadb_url)
    try:
        wallet, float_account = await known_float(engine, 100_00)
        async with SqlUnitOfWork(engine) as uow:
            held = await book(uow, pay_out(wallet, float_account, 10_00))
            assert float_account.id in held
            async with engine.connect() as other:
                with pytest.raises(OperationalError):  # locked: NOWAIT refuses at once
                    await other.execute(
                        text("SELECT id FROM ledger_accounts WHERE id = :id FOR UPDATE NOWAIT"),
                        {"id": float_account.id.value.bytes},
                    )
            await uow.commit()
    finally:
        await engine.dispose()


async def test_a_float_held_and_rolled_in_beside_one_written_last_keeps_its_rolled_changes_once(
    engine: AsyncEngine,
) -> None:
    from application.ledger import book_all
    from domain.wallet.money import Currency
    from persistence.tables import ledger_balance_deltas

    kes_wallet, kes_float = await wallet_and_float(engine)
    await fund(engine, kes_wallet, kes_float, 100_00)  # a change left to the roll-up: balance_cents 0
    usd_wallet, usd_float = await known_float_in(engine, Currency.USD)  # this process knows it: 90.00

    async with SqlUnitOfWork(engine) as uow:
        held = await book_all(
            uow,
            [pay_out(kes_wallet, kes_float, 30_00), pay_out(usd_wallet, usd_float, 10_00)],
            keep_above={AccountKind.MPESA_FLOAT: 0},
        )
        assert kes_float.id in held and usd_float.id not in held  # one held (and rolled in), one last
        await uow.commit()

    async with engine.connect() as connection:
        pending = (
            await connection.execute(
                select(func.count()).where(ledger_balance_deltas.c.account_id == kes_float.id.value)
            )
        ).scalar_one()
    # the 100.00 rolled into the balance saved, and its pending row gone with it: counted once
    assert (await stored(engine, kes_float))[0] == 70_00 and pending == 0
    assert (await stored(engine, usd_float))[0] == 80_00


async def known_float_in(engine: AsyncEngine, currency: Any) -> tuple[LedgerAccount, LedgerAccount]:
    wallet, float_account = await wallet_and_float(engine, currency)
    await fund(engine, wallet, float_account, 100_00)
    async with SqlUnitOfWork(engine) as uow:
        await book(uow, pay_out(wallet, float_account, 10_00), keep_above=FLOORS)
        await uow.commit()
    return wallet, float_account


async def test_a_change_written_last_with_no_held_account_beside_it_is_one_valid_update(
    engine: AsyncEngine,
) -> None:
    """The UPDATE of changes alone (no version-checked account with them) once built a CASE with no
    WHEN for the version, which no database takes. Every booking today holds a wallet beside a
    float, so it is the repository's own contract this pins."""
    _wallet, float_account = await known_float(engine, 100_00)
    before, version = await stored(engine, float_account)
    async with SqlUnitOfWork(engine) as uow:
        uow.ledger.change_last({float_account.id: (-25_00, 20_00)}, [])
        await uow.ledger.write_last()
        await uow.commit()
    assert await stored(engine, float_account) == (before - 25_00, version + 1)

    async with SqlUnitOfWork(engine) as uow:  # below the floor: nothing written, and said so
        uow.ledger.change_last({float_account.id: (-50_00, 20_00)}, [])
        with pytest.raises(FloorNotKept):
            await uow.ledger.write_last()
    assert await stored(engine, float_account) == (before - 25_00, version + 1)
