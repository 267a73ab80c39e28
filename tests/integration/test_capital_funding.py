"""Float funding is the house's own money: it lands in CAPITAL and never in SUSPENSE, and migration
0022 moves the funding a database booked to SUSPENSE the old way out of it, exactly once, with an
audit record. MariaDB and SQLite (the migration on both)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from application.ledger import book
from application.payments.floats import fund_float, open_system_accounts
from domain.shared.ids import LedgerAccountId
from domain.wallet.account_kind import AccountKind as K
from domain.wallet.ledger_entry import credit, debit
from domain.wallet.money import Currency, Money
from domain.wallet.posting import Posting
from persistence import ledger_balances, migrate
from persistence.consistency.check import check_consistency
from persistence.engine import create_engine
from persistence.ledger_rollup import roll_up
from persistence.tables import (
    audit_logs,
    audit_pending,
    ledger_accounts,
    ledger_balance_deltas,
    ledger_postings,
)
from persistence.unit_of_work import SqlUnitOfWork
from tests import databases

pytestmark = pytest.mark.integration

KES, USD = Currency.KES, Currency.USD
RECLASSIFIED = "reclassified float funding: SUSPENSE to CAPITAL (migration 0022)"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


async def _balance(engine: AsyncEngine, kind: K, currency: Currency) -> int:
    async with engine.connect() as conn:
        value = await conn.scalar(
            sa.select(sa.func.sum(ledger_balances.balance())).where(
                ledger_accounts.c.kind == kind.value, ledger_accounts.c.currency == currency.value
            )
        )
    return int(value or 0)


async def _reclassifications(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count()).where(ledger_postings.c.description == RECLASSIFIED)
        )
    return int(count or 0)


async def _audited(engine: AsyncEngine) -> list[str]:
    """The actions of the audit records (sealed or waiting) the migration wrote."""
    async with engine.connect() as conn:
        sealed = await conn.execute(
            sa.select(audit_logs.c.action).where(audit_logs.c.actor == "system:migration")
        )
        waiting = await conn.execute(
            sa.select(audit_pending.c.action).where(audit_pending.c.actor == "system:migration")
        )
        return [row.action for row in [*sealed, *waiting]]


async def test_float_funding_lands_in_capital_and_leaves_suspense_at_zero(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with SqlUnitOfWork(engine) as uow:
            await fund_float(uow, K.MPESA_FLOAT, Money(10_000_000_00, KES), "opening")
            await fund_float(uow, K.DERIV_AGENT_FLOAT, Money(50_000_00, USD), "opening")
            await fund_float(uow, K.MPESA_FLOAT, Money(-1_000_00, KES), "taken out")
            await uow.commit()

        assert await _balance(engine, K.CAPITAL, KES) == 9_999_000_00
        assert await _balance(engine, K.CAPITAL, USD) == 50_000_00
        assert await _balance(engine, K.MPESA_FLOAT, KES) == 9_999_000_00
        assert await _balance(engine, K.SUSPENSE, KES) == 0
        assert await _balance(engine, K.SUSPENSE, USD) == 0
        report = await check_consistency(engine, now=NOW, stale_after=timedelta(hours=1))
        assert report.violations == []
        assert report.balances_by_kind["CAPITAL KES"] == 9_999_000_00
    finally:
        await engine.dispose()


@pytest.fixture(params=["mariadb", "sqlite"])
def url_at_0016(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database migrated to 0016 only: the schema the old funding was booked on."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'at0016.db'}"
        migrate.upgrade(url, "0016")
        yield url
        return
    name, url = databases.create_mysql_database(migrated=False)
    migrate.upgrade(url, "0016")
    yield url
    databases.drop_mysql_database(name)


async def _fund_the_old_way(engine: AsyncEngine) -> None:
    """What float_funding booked before 0022: Dr float / Cr SUSPENSE (and out: the mirror), beside
    money that really is unexplained (a reconciliation finding), which must stay in SUSPENSE."""
    # Booked by today's code, whose postings leave hot accounts' changes to the roll-up: the table
    # for them stands in for this run only, rolled into the balances as the code of then wrote them.
    # Its outbox rows name their actor (0028), its floats their leased allowance (0029): the columns
    # stand in too.
    async with engine.begin() as conn:
        await conn.run_sync(ledger_balance_deltas.create)
        await conn.execute(sa.text("ALTER TABLE domain_events ADD COLUMN actor VARCHAR(64)"))
        await conn.execute(
            sa.text("ALTER TABLE ledger_accounts ADD COLUMN leased_cents BIGINT NOT NULL DEFAULT 0")
        )
    async with SqlUnitOfWork(engine) as uow:

        async def account(kind: K, currency: Currency) -> LedgerAccountId:
            return (await uow.ledger.get_or_create_account(kind=kind, currency=currency)).id

        mpesa, deriv = await account(K.MPESA_FLOAT, KES), await account(K.DERIV_AGENT_FLOAT, USD)
        s_kes, s_usd = await account(K.SUSPENSE, KES), await account(K.SUSPENSE, USD)
        postings = [
            (mpesa, s_kes, Money(10_000_000_00, KES), "float funding: opening"),
            (deriv, s_usd, Money(50_000_00, USD), "float funding: opening"),
            (s_kes, mpesa, Money(2_000_00, KES), "float funding: taken out"),
            (mpesa, s_kes, Money(123_45, KES), "reconciliation suspense: a payment nobody explains"),
        ]
        for debited, credited, amount, description in postings:
            posting = Posting.create(
                lines=[debit(debited, amount), credit(credited, amount)],
                description=description,
            )
            await book(uow, posting)
        await uow.commit()
    assert await roll_up(engine, NOW) > 0
    async with engine.begin() as conn:
        await conn.run_sync(ledger_balance_deltas.drop)
        await conn.execute(sa.text("ALTER TABLE domain_events DROP COLUMN actor"))
        await conn.execute(sa.text("ALTER TABLE ledger_accounts DROP COLUMN leased_cents"))


async def test_the_migration_moves_old_funding_out_of_suspense_exactly_once(url_at_0016: str) -> None:
    engine = create_engine(url_at_0016)
    try:
        await _fund_the_old_way(engine)
        async with engine.connect() as conn:  # at 0016 a balance is balance_cents alone
            suspense = await conn.scalar(
                sa.select(sa.func.sum(ledger_accounts.c.balance_cents)).where(
                    ledger_accounts.c.kind == K.SUSPENSE.value, ledger_accounts.c.currency == KES.value
                )
            )
        assert suspense == 9_998_000_00 + 123_45

        await migrate.upgrade_async(url_at_0016)

        # SUSPENSE keeps only the unexplained money; the funding, net of what was taken out, is capital.
        assert await _balance(engine, K.SUSPENSE, KES) == 123_45
        assert await _balance(engine, K.SUSPENSE, USD) == 0
        assert await _balance(engine, K.CAPITAL, KES) == 9_998_000_00
        assert await _balance(engine, K.CAPITAL, USD) == 50_000_00
        assert await _reclassifications(engine) == 2  # one posting per currency
        assert await _audited(engine) == ["ledger.funding_reclassified"] * 2
        report = await check_consistency(engine, now=NOW, stale_after=timedelta(hours=1))
        assert report.violations == []
        assert all(s["debit_cents"] == s["credit_cents"] for s in report.sums_by_currency.values())

        # Down and up again (a redeploy that rolled back): nothing moves twice.
        await migrate.downgrade_async(url_at_0016, "0016")
        await migrate.upgrade_async(url_at_0016)
        assert await _reclassifications(engine) == 2
        assert await _balance(engine, K.SUSPENSE, KES) == 123_45
        assert await _balance(engine, K.CAPITAL, KES) == 9_998_000_00

        # New funding goes to CAPITAL directly.
        async with SqlUnitOfWork(engine) as uow:
            await open_system_accounts(uow)
            await fund_float(uow, K.DERIV_AGENT_FLOAT, Money(1_00, USD), "top-up")
            await uow.commit()
        assert await _balance(engine, K.CAPITAL, USD) == 50_001_00
        assert await _balance(engine, K.SUSPENSE, USD) == 0
    finally:
        await engine.dispose()


async def test_a_database_never_funded_the_old_way_gets_no_reclassification(url_at_0016: str) -> None:
    engine = create_engine(url_at_0016)
    try:
        await migrate.upgrade_async(url_at_0016)
        assert await _reclassifications(engine) == 0
        assert await _balance(engine, K.CAPITAL, KES) == 0
        assert await _audited(engine) == []
    finally:
        await engine.dispose()
