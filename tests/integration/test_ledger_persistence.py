"""Booking postings through the unit of work, on MariaDB and SQLite."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from application.ledger import book
from domain.wallet.errors import Overdraft
from domain.wallet.ledger_account import LedgerAccount
from persistence.engine import create_engine
from persistence.tables import (
    audit_logs,
    domain_events,
    ledger_accounts,
    ledger_balance_deltas,
    ledger_entries,
    ledger_postings,
)
from persistence.unit_of_work import SqlUnitOfWork
from tests.integration.ledger_helpers import balance_of, fund, net_by_currency, pay_out, wallet_and_float

pytestmark = pytest.mark.integration

# What the roll-up stamps on the accounts it writes; no reading of the wall clock.
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def count(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


async def test_a_posting_commits_balances_entries_outbox_events_and_audit_together(
    engine: AsyncEngine,
) -> None:
    wallet, float_account = await wallet_and_float(engine)

    await fund(engine, wallet, float_account, 100_00)

    assert await balance_of(engine, wallet) == 100_00
    assert await balance_of(engine, float_account) == 100_00
    assert await count(engine, ledger_postings) == 1
    assert await count(engine, ledger_entries) == 2
    async with engine.connect() as connection:
        events = (await connection.execute(select(domain_events))).all()
        audits = (await connection.execute(select(audit_logs))).all()
    # the wallet is held and changed; the float money only came into waits for the roll-up
    assert [(e.event_type, e.aggregate_id) for e in events] == [("BalanceChanged", str(wallet.id))]
    assert {e.stream for e in events} == {"penpay.wallet"}
    assert all(e.published_at is None for e in events)
    assert {json.loads(e.payload)["balance_minor"] for e in events} == {100_00}
    assert [a.action for a in audits] == ["BalanceChanged"]
    assert all(len(a.row_hash) == 64 for a in audits)
    assert await net_by_currency(engine) == {"KES": 0}
    assert await stored_and_pending(engine, float_account) == (0, [100_00])


async def stored_and_pending(engine: AsyncEngine, account: LedgerAccount) -> tuple[int, list[int]]:
    """(balance_cents, the changes waiting for the roll-up) of `account`."""
    async with engine.connect() as connection:
        stored = await connection.scalar(
            select(ledger_accounts.c.balance_cents).where(ledger_accounts.c.id == account.id.value)
        )
        pending = await connection.scalars(
            select(ledger_balance_deltas.c.delta_cents)
            .where(ledger_balance_deltas.c.account_id == account.id.value)
            .order_by(ledger_balance_deltas.c.id)
        )
        return int(stored or 0), [int(d) for d in pending]


async def test_the_roll_up_moves_pending_changes_into_the_balance_and_nothing_else(
    engine: AsyncEngine,
) -> None:
    from persistence.ledger_rollup import roll_up

    wallet, float_account = await wallet_and_float(engine)
    await fund(engine, wallet, float_account, 30_00)
    await fund(engine, wallet, float_account, 12_00)
    assert await stored_and_pending(engine, float_account) == (0, [30_00, 12_00])

    assert await roll_up(engine, NOW) == 2
    assert await stored_and_pending(engine, float_account) == (42_00, [])
    assert await balance_of(engine, float_account) == 42_00
    assert await roll_up(engine, NOW) == 0
    assert await stored_and_pending(engine, float_account) == (42_00, [])


async def test_the_roll_up_skips_an_account_a_posting_holds(fresh_mariadb_url: str) -> None:
    # MariaDB only: SQLite has no row locks to skip.
    from persistence.ledger_rollup import roll_up

    engine = create_engine(fresh_mariadb_url)
    try:
        await _roll_up_skips_a_held_account(engine, roll_up)
    finally:
        await engine.dispose()


async def _roll_up_skips_a_held_account(engine: AsyncEngine, roll_up: Any) -> None:

    wallet, float_account = await wallet_and_float(engine)
    await fund(engine, wallet, float_account, 30_00)
    async with SqlUnitOfWork(engine) as uow:
        await uow.ledger.get_accounts_for_update([float_account.id])  # a payout holding the float
        assert await roll_up(engine, NOW) == 0  # does not wait for it
    assert await roll_up(engine, NOW) == 1
    assert await stored_and_pending(engine, float_account) == (30_00, [])


async def test_a_float_found_short_rolls_in_what_was_paid_into_it_and_pays_out(engine: AsyncEngine) -> None:
    wallet, float_account = await wallet_and_float(engine)
    await fund(engine, wallet, float_account, 30_00)
    async with SqlUnitOfWork(engine) as uow:
        accounts = await book(uow, pay_out(wallet, float_account, 25_00))
        await uow.commit()
    assert accounts[float_account.id].balance_minor == 5_00
    assert await stored_and_pending(engine, float_account) == (5_00, [])
    with pytest.raises(Overdraft):  # what is left, rolled in or not, is all there is
        async with SqlUnitOfWork(engine) as uow:
            await book(uow, pay_out(wallet, float_account, 5_01))
    assert await stored_and_pending(engine, float_account) == (5_00, [])


async def test_a_refused_posting_changes_nothing(engine: AsyncEngine) -> None:
    wallet, float_account = await wallet_and_float(engine)
    await fund(engine, wallet, float_account, 50_00)
    before = (
        await count(engine, ledger_entries),
        await count(engine, domain_events),
        await count(engine, audit_logs),
    )

    with pytest.raises(Overdraft):
        async with SqlUnitOfWork(engine) as uow:
            await book(uow, pay_out(wallet, float_account, 50_01))
            await uow.commit()

    assert await balance_of(engine, wallet) == 50_00
    after = (
        await count(engine, ledger_entries),
        await count(engine, domain_events),
        await count(engine, audit_logs),
    )
    assert after == before


async def test_a_crash_before_commit_leaves_no_trace(engine: AsyncEngine) -> None:
    wallet, float_account = await wallet_and_float(engine)
    await fund(engine, wallet, float_account, 10_00)
    before = (await count(engine, ledger_entries), await count(engine, domain_events))

    with pytest.raises(RuntimeError, match="power cut"):
        async with SqlUnitOfWork(engine) as uow:
            await book(uow, pay_out(wallet, float_account, 4_00))
            raise RuntimeError("power cut")

    assert await balance_of(engine, wallet) == 10_00
    assert (await count(engine, ledger_entries), await count(engine, domain_events)) == before


async def test_an_account_id_is_remembered_once_committed_never_from_a_rolled_back_creation(
    engine: AsyncEngine,
) -> None:
    from domain.wallet.account_kind import AccountKind
    from domain.wallet.money import Currency

    kind, currency = AccountKind.MPESA_FLOAT, Currency.KES
    async with SqlUnitOfWork(engine) as uow:  # created, then rolled back: that id never existed
        phantom = await uow.ledger.account_id(kind=kind, currency=currency)
        assert await uow.ledger.account_id(kind=kind, currency=currency) == phantom
    async with SqlUnitOfWork(engine) as uow:
        created = await uow.ledger.account_id(kind=kind, currency=currency)
        await uow.commit()
    assert created != phantom

    async with SqlUnitOfWork(engine) as uow:  # read back committed: remembered from now on
        assert await uow.ledger.account_id(kind=kind, currency=currency) == created
    async with engine.begin() as connection:  # so a rename behind its back goes unnoticed
        await connection.execute(
            ledger_accounts.update().where(ledger_accounts.c.id == created.value).values(code="moved")
        )
    async with SqlUnitOfWork(engine) as uow:
        assert await uow.ledger.account_id(kind=kind, currency=currency) == created


@contextlib.asynccontextmanager
async def another_process(engine: AsyncEngine) -> AsyncIterator[tuple[AsyncEngine, list[str]]]:
    """An engine of its own on the same database (a process that knows none of its accounts yet),
    with the first word of every statement it sends."""
    from sqlalchemy import event

    fresh = create_engine(engine.url.render_as_string(hide_password=False))
    sent: list[str] = []

    def on_execute(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if not statement.upper().startswith("BEGIN"):  # SQLite's own
            sent.append(statement.split(None, 1)[0].upper())

    event.listen(fresh.sync_engine, "before_cursor_execute", on_execute)
    try:
        yield fresh, sent
    finally:
        event.remove(fresh.sync_engine, "before_cursor_execute", on_execute)
        await fresh.dispose()


async def test_an_account_looked_up_by_its_code_is_described_without_another_read(
    engine: AsyncEngine,
) -> None:
    from domain.wallet.account_kind import AccountKind
    from domain.wallet.money import Currency

    wallet, _ = await wallet_and_float(engine)
    async with another_process(engine) as (fresh, sent), SqlUnitOfWork(fresh) as uow:
        found = await uow.ledger.account_id(
            kind=AccountKind.USER_WALLET, currency=Currency.KES, user_id=wallet.user_id
        )
        assert found == wallet.id and sent == ["SELECT"]  # its code read it
        described = await uow.ledger.describe_accounts([found])
        assert sent == ["SELECT"]  # and what it is came with that read
    assert described[found].kind is AccountKind.USER_WALLET
    assert described[found].currency is Currency.KES


async def test_a_users_wallets_are_learnt_in_one_read(engine: AsyncEngine) -> None:
    """A deposit's credit names the user's KES wallet, then the USD one; a process that knows
    neither (in production, most users) learns both with the first lookup."""
    from domain.wallet.account_kind import AccountKind
    from domain.wallet.money import Currency

    kes, _ = await wallet_and_float(engine)
    async with SqlUnitOfWork(engine) as uow:
        usd = await uow.ledger.get_or_create_account(
            kind=AccountKind.USER_WALLET, currency=Currency.USD, user_id=kes.user_id
        )
        await uow.commit()
    wallet = AccountKind.USER_WALLET
    async with another_process(engine) as (fresh, sent), SqlUnitOfWork(fresh) as uow:
        assert await uow.ledger.account_id(kind=wallet, currency=Currency.KES, user_id=kes.user_id) == kes.id
        assert await uow.ledger.account_id(kind=wallet, currency=Currency.USD, user_id=kes.user_id) == usd.id
        described = await uow.ledger.describe_accounts([kes.id, usd.id])
        assert sent == ["SELECT"]
    assert {a.currency for a in described.values()} == {Currency.KES, Currency.USD}


async def test_postings_booked_together_are_written_in_order_with_one_balance_each(
    engine: AsyncEngine,
) -> None:
    from application.ledger import book_all

    wallet, float_account = await wallet_and_float(engine)
    await fund(engine, wallet, float_account, 100_00)
    async with SqlUnitOfWork(engine) as uow:
        # the second may only pass because the first is applied before it is checked
        accounts = await book_all(
            uow, [pay_out(wallet, float_account, 60_00), pay_out(wallet, float_account, 40_00)]
        )
        await uow.commit()
    assert accounts[wallet.id].balance_minor == 0
    assert await balance_of(engine, wallet) == 0
    assert await balance_of(engine, float_account) == 0
    assert await count(engine, ledger_postings) == 3
    assert await count(engine, ledger_entries) == 6
    assert await net_by_currency(engine) == {"KES": 0}
    async with engine.connect() as connection:
        payloads = [
            json.loads(p)
            for p in (
                await connection.execute(
                    select(domain_events.c.payload).where(domain_events.c.aggregate_id == str(wallet.id))
                )
            ).scalars()
        ]
    assert sorted(p["balance_minor"] for p in payloads) == [0, 40_00, 100_00]


async def test_postings_booked_together_are_refused_whole(engine: AsyncEngine) -> None:
    from application.ledger import book_all

    wallet, float_account = await wallet_and_float(engine)
    await fund(engine, wallet, float_account, 50_00)
    with pytest.raises(Overdraft):
        async with SqlUnitOfWork(engine) as uow:
            await book_all(
                uow, [pay_out(wallet, float_account, 30_00), pay_out(wallet, float_account, 30_00)]
            )
            await uow.commit()
    assert await balance_of(engine, wallet) == 50_00
    assert await count(engine, ledger_postings) == 1


async def test_balances_written_together_are_refused_when_one_changed_since_it_was_read(
    engine: AsyncEngine,
) -> None:
    from sqlalchemy import update

    from domain.shared.errors import ConcurrentModification
    from domain.wallet.posting_service import post
    from persistence.ledger_rollup import roll_up

    wallet, float_account = await wallet_and_float(engine)
    await fund(engine, wallet, float_account, 50_00)
    await roll_up(engine, NOW)  # the float's balance_cents, read locked, then has it
    async with SqlUnitOfWork(engine) as uow:
        accounts = await uow.ledger.get_accounts_for_update([wallet.id, float_account.id])
        # another writer's change, as the version check would meet it
        await uow.connection.execute(
            update(ledger_accounts)
            .where(ledger_accounts.c.id == float_account.id.value)
            .values(version=ledger_accounts.c.version + 1)
        )
        post(pay_out(wallet, float_account, 10_00), accounts)
        with pytest.raises(ConcurrentModification):
            await uow.ledger.save_accounts([accounts[wallet.id], accounts[float_account.id]])
