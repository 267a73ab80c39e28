"""The reconciliation stack: the saga stack of tests/sagas with reconciliation wired to its simulators
through their provider APIs (Daraja's, the gateway's), never their control APIs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from application.reconciliation.service import Reconciler, RunReport
from deriv_gateway.statement_client import GatewayDerivReads
from domain.payments.status import TransactionStatus
from mpesa_adapter.client import DarajaClient
from mpesa_adapter.pull_reads import PullReads
from mpesa_adapter.reconciliation_reads import DarajaReconciliationReads
from penpay.reconcile.wiring import ProviderReadsOverApis
from persistence.reconciliation import SqlReconciliationStore
from persistence.tables import c2b_payments, transactions
from tests.mpesa_adapter.conftest import inbox_on
from tests.sagas.harness import MPESA_FLOAT_KES, Stack, running_stack
from workers.memory_bus import InProcessBus


@dataclass
class World:
    stack: Stack
    reconciler: Reconciler
    store: SqlReconciliationStore

    async def window(self) -> tuple[datetime, datetime]:
        """From a minute before the first transaction or paybill payment to a minute after the last
        (never the wall clock)."""
        bounds: list[datetime] = []
        async with self.stack.engine.connect() as conn:
            for table in (transactions, c2b_payments):
                first, last = (
                    await conn.execute(select(func.min(table.c.created_at), func.max(table.c.updated_at)))
                ).one()
                bounds += [b for b in (first, last) if b is not None]
        return min(bounds) - timedelta(minutes=1), max(bounds) + timedelta(minutes=1)

    async def run(self) -> RunReport:
        start, end = await self.window()
        return await self.reconciler.run(start, end, now=end)

    async def items(self, report: RunReport) -> list[Any]:
        return await self.store.items(report.run_id)

    async def customer_pays_paybill(
        self, phone: str, amount: int, account: str = "NOSUCHREF", **extra: Any
    ) -> dict[str, Any]:
        """The customer's phone pays the paybill (the simulator's control API stands for it), then the
        simulator's deliveries (validation, confirmation) drain. The answer: {"TransID", "status", ...}."""
        async with self.stack.http.post(
            f"{self.stack.mpesa_sim.base_url}/__control__/c2b/pay",
            json={"phone": phone, "amount": amount, "account": account, **extra},
        ) as response:
            assert response.status == 201, await response.text()
            paid = dict(await response.json())
        await self.stack.mpesa_sim.drain()
        return paid

    async def rows(self, table: Any, *where: Any) -> list[Any]:
        async with self.stack.engine.connect() as conn:
            return list((await conn.execute(select(table).where(*where))).all())

    async def count(self, table: Any, *where: Any) -> int:
        async with self.stack.engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
            )


@pytest.fixture
async def world(fresh_mariadb_url: str) -> AsyncIterator[World]:
    bus = InProcessBus()
    # The simulator's utility account starts where the ledger's M-Pesa float does.
    overrides = {"utility_balance": MPESA_FLOAT_KES.amount_minor // 100}
    async with running_stack(fresh_mariadb_url, bus, mpesa_overrides=overrides) as stack:
        await stack.fund_floats()
        daraja = DarajaClient(stack.daraja_config)
        await daraja.register_c2b_urls()  # the paybill's validation and confirmation URLs
        channel = grpc.aio.insecure_channel(stack.gateway.address)
        try:
            reads = ProviderReadsOverApis(
                DarajaReconciliationReads(
                    daraja,
                    stack.engine,
                    inbox=inbox_on(stack.engine, stack.clock),
                    clock=stack.clock,
                    pulls=PullReads(
                        daraja,
                        nominated_number="254708374149",
                        callback_url=f"{stack.callbacks.base_url}/pull",
                    ),
                    balance_wait=10.0,
                ),
                GatewayDerivReads(channel, timeout=10.0, rest=True),
            )
            store = SqlReconciliationStore(stack.engine)
            yield World(stack, Reconciler(reads, store), store)
        finally:
            await channel.close()
            await daraja.close()


async def a_deposit_and_a_withdrawal(stack: Stack) -> tuple[Any, Any]:
    user = await stack.user()
    deposit = await stack.deposit(user, 2_600)
    assert (await stack.settle(deposit.id)).status == TransactionStatus.COMPLETED
    withdrawal = await stack.withdrawal(user, 10_00)
    await stack.settle(withdrawal.id, until={TransactionStatus.AWAITING_WITHDRAWAL_CODE})
    await stack.withdrawals.confirm_withdrawal(
        user_id=user, transaction_id=withdrawal.id, verification_code=await stack.withdrawal_code()
    )
    assert (await stack.settle(withdrawal.id)).status == TransactionStatus.COMPLETED
    return deposit, withdrawal
