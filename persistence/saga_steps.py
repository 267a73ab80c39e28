"""The saga-step journal (`saga_steps`): SagaSteps port on the unit of work's connection."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import case, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from application.payments.ports import StepRecord
from domain.shared.ids import TransactionId
from persistence.tables import saga_steps

_t = saga_steps


def _record(row: object) -> StepRecord:
    return StepRecord(
        step=row.step,  # type: ignore[attr-defined]
        attempts=row.attempts,  # type: ignore[attr-defined]
        started_at=row.started_at,  # type: ignore[attr-defined]
        updated_at=row.updated_at,  # type: ignore[attr-defined]
        detail=row.detail,  # type: ignore[attr-defined]
        retry_at=row.retry_at,  # type: ignore[attr-defined]
    )


class SqlSagaSteps:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get(self, transaction_id: TransactionId) -> Mapping[str, StepRecord]:
        rows = await self._connection.execute(select(_t).where(_t.c.transaction_id == transaction_id.value))
        return {row.step: _record(row) for row in rows}

    async def start(
        self, transaction_id: TransactionId, step: str, *, now: datetime, detail: str | None = None
    ) -> StepRecord:
        key = (_t.c.transaction_id == transaction_id.value) & (_t.c.step == step)
        detail = detail[:255] if detail else None
        changed = await self._connection.execute(
            update(_t)
            .where(key)
            .values(attempts=_t.c.attempts + 1, updated_at=now, detail=detail, retry_at=None)
        )
        if changed.rowcount == 0:
            try:
                async with self._connection.begin_nested():
                    await self._connection.execute(
                        insert(_t).values(
                            transaction_id=transaction_id.value,
                            step=step,
                            attempts=1,
                            started_at=now,
                            updated_at=now,
                            detail=detail,
                        )
                    )
            except IntegrityError:
                # A concurrent first attempt inserted it (the caller holds the transaction's
                # row lock, so only on SQLite-less races); count this one too.
                await self._connection.execute(
                    update(_t)
                    .where(key)
                    .values(attempts=_t.c.attempts + 1, updated_at=now, detail=detail, retry_at=None)
                )
        row = (await self._connection.execute(select(_t).where(key))).one()
        return _record(row)

    async def defer(
        self, transaction_id: TransactionId, step: str, *, now: datetime, until: datetime, detail: str
    ) -> None:
        key = (_t.c.transaction_id == transaction_id.value) & (_t.c.step == step)
        await self._connection.execute(
            update(_t)
            .where(key)
            .values(
                attempts=case((_t.c.attempts > 0, _t.c.attempts - 1), else_=0),
                updated_at=now,
                retry_at=until,
                detail=detail[:255],
            )
        )

    async def reset(self, transaction_id: TransactionId, step: str, *, now: datetime, detail: str) -> None:
        """A person approved trying the step again: its attempts start over."""
        key = (_t.c.transaction_id == transaction_id.value) & (_t.c.step == step)
        await self._connection.execute(
            update(_t).where(key).values(attempts=0, updated_at=now, retry_at=None, detail=detail[:255])
        )
