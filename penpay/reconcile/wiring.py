"""The provider reads of a reconciliation run, from both adapters."""

from __future__ import annotations

from datetime import datetime

from application.reconciliation.ports import ProviderRecord
from application.reconciliation.rules import Amount
from deriv_gateway.statement_client import GatewayDerivReads
from mpesa_adapter.reconciliation_reads import DarajaReconciliationReads


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

    async def mpesa_balance(self) -> Amount:
        return await self._mpesa.mpesa_balance()

    async def deriv_balance(self) -> Amount:
        return await self._deriv.balance()
