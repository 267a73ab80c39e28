"""Per-user figures from `transactions` for the AML limits (application.identity.ports.TransactionStats).

Uses the (user_id, created_at) index. Failed and reversed transactions moved no money, so they
do not count towards amount limits; every started transaction counts towards velocity.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from application.identity.ports import Usage
from domain.payments.status import TransactionStatus
from domain.shared.ids import UserId
from persistence.engine import connect
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
        params: dict[str, object] = {
            "b_user_id": user_id.value,
            "b_currency": currency,
            "b_count_since": count_since,
            "b_oldest": min([count_since, *amounts_since]),
        }
        params.update({f"b_since_{i}": since for i, since in enumerate(amounts_since)})
        async with connect(self._engine) as connection:
            row = (await connection.execute(_usage(len(amounts_since)), params)).one()
        return Usage(
            started=int(row[0] or 0), amounts=tuple(int(v or 0) for v in row[1 : 1 + len(amounts_since)])
        )


@functools.cache
def _usage(windows: int) -> Select[Any]:
    """The usage statement for `windows` amount windows, built once (per call it was a third of the
    API's CPU for a deposit): the times are bound, not written into it."""
    moved = and_(_t.c.amount_currency == bindparam("b_currency"), _t.c.status.not_in(_NO_MONEY_MOVED))
    columns = [func.coalesce(func.sum(case((_t.c.created_at >= bindparam("b_count_since"), 1), else_=0)), 0)]
    columns += [
        func.coalesce(
            func.sum(
                case((and_(moved, _t.c.created_at >= bindparam(f"b_since_{i}")), _t.c.amount_cents), else_=0)
            ),
            0,
        )
        for i in range(windows)
    ]
    return select(*columns).where(
        _t.c.user_id == bindparam("b_user_id"), _t.c.created_at >= bindparam("b_oldest")
    )
