"""Store a new Transaction exactly once per idempotency key (PEC 10).

The database's unique idempotency_key_hash decides between racing requests: the loser's
insert fails (on InnoDB it waits for the winner's commit first), and the loser then reads
and returns the winner's transaction, so both callers see the same result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from application.errors import DuplicateIdempotencyKey
from application.unit_of_work import UnitOfWork
from domain.payments.ports import TransactionRepository
from domain.payments.transaction import Transaction
from domain.shared.ids import UserId


class TransactionUnitOfWork(UnitOfWork, Protocol):
    """The part of the unit of work this use case needs: the one port, with transactions."""

    @property
    def transactions(self) -> TransactionRepository: ...


@dataclass(frozen=True, slots=True)
class Created:
    transaction: Transaction
    created: bool  # False: an earlier request with this key made it


async def create_once(
    unit_of_work: Callable[[], TransactionUnitOfWork],
    *,
    user_id: UserId,
    key_hash: str,
    build: Callable[[], Transaction],
    looked: bool = False,
) -> Created:
    """`looked`: the caller found no transaction under the key a moment ago, so it is not read
    again; the unique key hash still decides a race."""
    async with unit_of_work() as uow:
        existing = None if looked else await uow.transactions.find_by_idempotency_key(user_id, key_hash)
        if existing is not None:
            return Created(existing, created=False)
        transaction = build()
        try:
            await uow.transactions.add(transaction)
            await uow.commit()
            return Created(transaction, created=True)
        except DuplicateIdempotencyKey:
            pass
    # A fresh unit of work: a new snapshot that sees the winner's committed row.
    async with unit_of_work() as uow:
        winner = await uow.transactions.find_by_idempotency_key(user_id, key_hash)
        if winner is None:
            raise DuplicateIdempotencyKey("the idempotency key is taken but its transaction is not visible")
        return Created(winner, created=False)
