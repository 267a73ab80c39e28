"""TransactionQueries: GetTransaction and ListTransactions (PEC 6.2: pure reads, no aggregate changed,
no event). A user sees only their own transactions; a page token is the last id of the page before.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from application.payments.errors import TransactionNotFound
from application.payments.ports import PaymentsUnitOfWork
from domain.payments.transaction import Transaction
from domain.shared.errors import InvalidValue
from domain.shared.ids import TransactionId, UserId

MAX_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class TransactionPage:
    items: list[Transaction]
    next_page_token: str


class TransactionQueries:
    def __init__(self, *, unit_of_work: Callable[[], PaymentsUnitOfWork]) -> None:
        self._uow = unit_of_work

    async def get_transaction(self, *, user_id: UserId, transaction_id: TransactionId) -> Transaction:
        async with self._uow() as uow:
            tx = await uow.transactions.get(transaction_id)
        if tx is None or tx.user_id != user_id:
            raise TransactionNotFound("no such transaction", field="transaction_id")
        return tx

    async def list_transactions(
        self, *, user_id: UserId, page_size: int, page_token: str | None
    ) -> TransactionPage:
        size = min(max(page_size or 20, 1), MAX_PAGE_SIZE)
        before = _decode_token(page_token) if page_token else None
        async with self._uow() as uow:
            items = await uow.transactions.list_for_user(user_id, limit=size + 1, before=before)
        more = len(items) > size
        items = items[:size]
        token = _encode_token(items[-1].id) if more and items else ""
        return TransactionPage(items, token)


def _encode_token(tx_id: TransactionId) -> str:
    return base64.urlsafe_b64encode(tx_id.value.bytes).decode().rstrip("=")


def _decode_token(token: str) -> TransactionId:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return TransactionId(uuid.UUID(bytes=raw))
    except (ValueError, TypeError):
        raise InvalidValue("page_token is not valid", field="page_token") from None


__all__ = ["MAX_PAGE_SIZE", "TransactionPage", "TransactionQueries"]
