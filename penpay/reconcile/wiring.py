"""The provider reads of a reconciliation run, from both adapters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from application.reconciliation.ports import Payout, PayoutCheck, ProviderRecord
from application.reconciliation.rules import Amount
from application.reconciliation.service import Reconciler
from deriv_gateway.statement_client import GatewayDerivReads
from mpesa_adapter.reconciliation_reads import DarajaReconciliationReads
from persistence.reconciliation import SqlReconciliationStore

if TYPE_CHECKING:
    from penpay.bootstrap import Core


class ProviderReadsOverApis:
    def __init__(self, mpesa: DarajaReconciliationReads, deriv: GatewayDerivReads) -> None:
        self._mpesa = mpesa
        self._deriv = deriv

    async def pulled_c2b(self, start: datetime, end: datetime) -> list[ProviderRecord]:
        return await self._mpesa.pulled_c2b(start, end)

    async def deriv_statement(self, start: datetime, end: datetime) -> list[ProviderRecord]:
        return await self._deriv.statement(start, end)

    async def ask_b2c_status(self, originator_conversation_id: str) -> None:
        await self._mpesa.ask_b2c_status(originator_conversation_id)

    async def mpesa_balance(self) -> dict[str, Amount]:
        return await self._mpesa.mpesa_balance()

    def payout_record(self, payout: Payout) -> ProviderRecord | None:
        return self._mpesa.payout_record(payout)

    async def check_payouts(self, payouts: list[Payout]) -> dict[str, PayoutCheck]:
        return await self._mpesa.check_payouts(payouts)

    async def deriv_balance(self) -> Amount:
        return await self._deriv.balance()


@dataclass
class Reconciliation:
    reconciler: Reconciler
    store: SqlReconciliationStore
    _closers: list[Callable[[], Awaitable[object]]] = field(default_factory=list)

    async def close(self) -> None:
        for close in self._closers:
            await close()


def reconciliation_store(core: Core) -> SqlReconciliationStore:
    """Runs, items and cursors; what a run books, it books as the actor "reconciliation"."""
    return SqlReconciliationStore(core.engine, unit_of_work=lambda: core.unit_of_work(actor="reconciliation"))


def reconciliation(core: Core) -> Reconciliation:
    """Reconciliation wired to Daraja (its own APIs) and the Deriv gateway (read-only RPCs)."""
    from datetime import timedelta

    from deriv_gateway.channel import gateway_channel
    from penpay.bootstrap import callback_inbox, daraja_client, pull_reads

    s = core.settings
    closers: list[Callable[[], Awaitable[object]]] = []
    daraja = daraja_client(s, closers.append, clock=core.clock)
    channel = gateway_channel(s.gateway_addr)
    closers.append(channel.close)
    reads = ProviderReadsOverApis(
        DarajaReconciliationReads(
            daraja,
            core.engine,
            inbox=callback_inbox(core),
            clock=core.clock,
            pulls=pull_reads(s, daraja),
            balance_wait=s.reconcile_balance_wait,
        ),
        GatewayDerivReads(channel, timeout=s.gateway_request_timeout + 10, rest=bool(s.deriv_rest_base_url)),
    )
    store = reconciliation_store(core)
    reconciler = Reconciler(reads, store, b2c_grace=timedelta(seconds=s.reconcile_b2c_grace))
    return Reconciliation(reconciler, store, closers)
