"""LedgerEntry: one immutable line of a posting. Entries are never edited; a mistake is
undone by a reversal posting."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from domain.shared.clock import require_utc, utc_now
from domain.shared.ids import LedgerAccountId, LedgerEntryId, PostingId, TransactionId
from domain.wallet.account_kind import LedgerSide
from domain.wallet.errors import InvalidAmount
from domain.wallet.money import Money


@dataclass(frozen=True, slots=True)
class PostingLine:
    """Input to Posting.create: which account, which side, how much (always positive)."""

    account_id: LedgerAccountId
    side: LedgerSide
    amount: Money

    def __post_init__(self) -> None:
        if not self.amount.is_positive():
            raise InvalidAmount(f"a ledger line moves a positive amount, got {self.amount}")


def debit(account_id: LedgerAccountId, amount: Money) -> PostingLine:
    return PostingLine(account_id, LedgerSide.DEBIT, amount)


def credit(account_id: LedgerAccountId, amount: Money) -> PostingLine:
    return PostingLine(account_id, LedgerSide.CREDIT, amount)


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerEntry:
    id: LedgerEntryId
    posting_id: PostingId
    account_id: LedgerAccountId
    side: LedgerSide
    amount: Money
    transaction_id: TransactionId | None
    created_at: datetime = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if not self.amount.is_positive():
            raise InvalidAmount(f"a ledger entry moves a positive amount, got {self.amount}")
        object.__setattr__(self, "created_at", require_utc(self.created_at, "created_at"))

    def signed_minor(self, normal_side: LedgerSide) -> int:
        """The entry's effect on a balance kept in `normal_side` terms."""
        return self.amount.amount_minor if self.side is normal_side else -self.amount.amount_minor
