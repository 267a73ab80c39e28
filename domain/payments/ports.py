"""Ports of the payments context, implemented by persistence (PEC 7).

The application is asyncio, so the methods are declared `async`; this is typing only.
"""

from __future__ import annotations

from typing import Protocol

from domain.payments.transaction import Transaction
from domain.shared.ids import TransactionId, UserId
from domain.wallet.ports import LedgerRepository

__all__ = ["LedgerRepository", "TransactionRepository"]


class TransactionRepository(Protocol):
    async def add(self, tx: Transaction) -> None:
        """Insert the transaction, its attachments and pending events (outbox) atomically."""
        ...

    async def get(self, tx_id: TransactionId) -> Transaction | None: ...

    async def get_for_update(self, tx_id: TransactionId) -> Transaction | None:
        """Load with a row lock held until the surrounding database transaction ends."""
        ...

    def resume(self, tx: Transaction) -> None:
        """Continue in this unit of work with an aggregate an earlier one read (no statement):
        save() checks the version it was read at, so a change meanwhile is ConcurrentModification."""
        ...

    async def find_by_idempotency_key(self, user_id: UserId, key_hash: str) -> Transaction | None: ...

    async def save(self, tx: Transaction) -> None:
        """Update with an optimistic version check (ConcurrentModification), upsert the
        attachments and append pending events to the outbox. DuplicateReceipt when an M-Pesa
        receipt recorded here is already another request's."""
        ...

    async def find_by_checkout_request_id(
        self, checkout_request_id: str, *, hold_absence: bool = False
    ) -> Transaction | None:
        """A plain read (save() checks its version). hold_absence: when there is no such request,
        its id stays locked until the unit of work ends, so one stored meanwhile waits for it
        (ConcurrentModification when it was stored between the read and the lock)."""
        ...

    async def list_for_user(
        self, user_id: UserId, *, limit: int, before: TransactionId | None = None
    ) -> list[Transaction]:
        """The user's transactions, newest first (ids are UUIDv7: time-ordered)."""
        ...

    async def find_by_originator_conversation_id(
        self, originator_conversation_id: str
    ) -> Transaction | None: ...
