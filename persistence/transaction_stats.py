"""Per-user figures from `transactions` for the AML limits (application.identity.ports.TransactionStats).

Uses the (user_id, created_at) index. Failed and reversed transactions moved no money, so they
do not count towards amount limits; every started transaction counts towards velocity.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from application.identity.ports import Usage
from domain.payments.status import TransactionStatus
from domain.shared.ids import UserId
from persistence.tables import transactions

_t = transactions
_NO_MONEY_MOVED = [TransactionStatus.FAILED.value, TransactionStatus.REVERSED.value]
_AMOUNT_SINCE = select(func.coalesce(func.sum(_t.c.amount_cents), 0)).where(
    _t.c.user_id == bindparam("user_id"),
    _t.c.created_at >= bindparam("since"),
    _t.c.amount_currency == bindparam("currency"),
    _t.c.status.not_in(_NO_MONEY_MOVED),
)
_COUNT_SINCE = select(func.count()).where(
    _t.c.user_id == bindparam("user_id"), _t.c.created_at >= bindparam("since")
)


class SqlTransactionStats:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def amount_since(self, user_id: UserId, currency: str, since: datetime) -> int:
        async with self._engine.connect() as connection:
            value = await connection.scalar(
                _AMOUNT_SINCE, {"user_id": user_id.value, "since": since, "currency": currency}
            )
        return int(value or 0)

    async def count_since(self, user_id: UserId, since: datetime) -> int:
        async with self._engine.connect() as connection:
            value = await connection.scalar(_COUNT_SINCE, {"user_id": user_id.value, "since": since})
        return int(value or 0)

    async def usage(
        self, user_id: UserId, currency: str, *, count_since: datetime, amounts_since: Sequence[datetime]
    ) -> Usage:
        """Velocity and every amount window in one statement over the oldest window's rows."""
        moved = and_(_t.c.amount_currency == currency, _t.c.status.not_in(_NO_MONEY_MOVED))
        columns = [func.coalesce(func.sum(case((_t.c.created_at >= count_since, 1), else_=0)), 0)]
        columns += [
            func.coalesce(
                func.sum(case((and_(moved, _t.c.created_at >= since), _t.c.amount_cents), else_=0)), 0
            )
            for since in amounts_since
        ]
        oldest = min([count_since, *amounts_since])
        query = select(*columns).where(_t.c.user_id == user_id.value, _t.c.created_at >= oldest)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).one()
        return Usage(
            started=int(row[0] or 0), amounts=tuple(int(v or 0) for v in row[1 : 1 + len(amounts_since)])
        )
