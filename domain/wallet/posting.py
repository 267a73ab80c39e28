"""Posting: a balanced set of ledger entries, booked together or not at all."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from domain.shared.clock import require_utc, utc_now
from domain.shared.errors import InvalidValue
from domain.shared.ids import LedgerEntryId, PostingId, TransactionId
from domain.wallet.account_kind import LedgerSide
from domain.wallet.errors import UnbalancedPosting
from domain.wallet.ledger_entry import LedgerEntry, PostingLine
from domain.wallet.money import Currency

MAX_DESCRIPTION_LENGTH = 255


def _require_balanced(entries: Sequence[LedgerEntry]) -> None:
    if len(entries) < 2:
        raise UnbalancedPosting(f"a posting needs at least two entries, got {len(entries)}")
    net: dict[Currency, int] = defaultdict(int)
    for entry in entries:
        sign = 1 if entry.side is LedgerSide.DEBIT else -1
        net[entry.amount.currency] += sign * entry.amount.amount_minor
    unbalanced = {currency.value: amount for currency, amount in net.items() if amount != 0}
    if unbalanced:
        raise UnbalancedPosting(f"debits and credits differ (debits - credits, minor units): {unbalanced}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Posting:
    id: PostingId
    transaction_id: TransactionId | None
    description: str
    entries: tuple[LedgerEntry, ...]
    reverses: PostingId | None = None
    created_at: datetime = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if not self.description.strip() or len(self.description) > MAX_DESCRIPTION_LENGTH:
            raise InvalidValue(
                f"description must be 1 to {MAX_DESCRIPTION_LENGTH} characters", field="description"
            )
        object.__setattr__(self, "entries", tuple(self.entries))
        object.__setattr__(self, "created_at", require_utc(self.created_at, "created_at"))
        if any(e.posting_id != self.id or e.transaction_id != self.transaction_id for e in self.entries):
            raise UnbalancedPosting("every entry must belong to this posting and its transaction")
        _require_balanced(self.entries)

    @classmethod
    def create(
        cls,
        *,
        lines: Sequence[PostingLine],
        description: str,
        transaction_id: TransactionId | None = None,
        reverses: PostingId | None = None,
        now: datetime | None = None,
    ) -> Posting:
        posting_id = PostingId.new()
        created_at = require_utc(now) if now is not None else utc_now()
        entries = tuple(
            LedgerEntry(
                id=LedgerEntryId.new(),
                posting_id=posting_id,
                account_id=line.account_id,
                side=line.side,
                amount=line.amount,
                transaction_id=transaction_id,
                created_at=created_at,
            )
            for line in lines
        )
        return cls(
            id=posting_id,
            transaction_id=transaction_id,
            description=description,
            entries=entries,
            reverses=reverses,
            created_at=created_at,
        )

    def reversal(self, description: str, *, now: datetime | None = None) -> Posting:
        """The mirror posting (every side swapped) that undoes this one."""
        return Posting.create(
            lines=[PostingLine(e.account_id, e.side.opposite(), e.amount) for e in self.entries],
            description=description,
            transaction_id=self.transaction_id,
            reverses=self.id,
            now=now,
        )
