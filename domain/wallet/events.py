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


@dataclass(frozen=True, slots=True, kw_only=True)
class FloatLow(DomainEvent):
    """A float account (M-Pesa or Deriv agent) is below its threshold, or too low for a
    payment that is now waiting for a top-up."""

    aggregate_type = "LedgerAccount"

    account_id: LedgerAccountId
    kind: str
    currency: Currency
    balance_minor: int
    needed_minor: int  # what the waiting payment needs (0: only below the threshold)
    threshold_minor: int

    def aggregate_id(self) -> str:
        return str(self.account_id)
