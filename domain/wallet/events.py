"""Events of the wallet context."""

from __future__ import annotations

from dataclasses import dataclass

from domain.shared.events import DomainEvent
from domain.shared.ids import LedgerAccountId, PostingId
from domain.wallet.money import Currency


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceChanged(DomainEvent):
    aggregate_type = "LedgerAccount"

    account_id: LedgerAccountId
    currency: Currency
    balance_minor: int
    posting_id: PostingId
    version: int

    def aggregate_id(self) -> str:
        return str(self.account_id)

    def aggregate_version(self) -> int | None:
        return self.version
