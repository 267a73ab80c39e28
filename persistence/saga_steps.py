"""The saga-step journal (`saga_steps`): SagaSteps port on the unit of work's connection."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, literal, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from application.payments.ports import LockedSaga, StepRecord
from domain.shared.ids import TransactionId
from persistence.tables import saga_steps, transactions
from persistence.transaction_repository import SqlTransactionRepository

_t = saga_steps


def _bound(*names: str) -> dict[str, Any]:
    """A step row's columns bound at execution: each statement is built once (building it per
    call, with its ON DUPLICATE KEY alias of the table, cost more CPU than sending it)."""
    return {name: bindparam(name, type_=_t.c[name].type) for name in names}


_ROW = ("transaction_id", "step", "started_at", "updated_at", "detail")


def _start_statements() -> tuple[Any, Any]:
    """`start`'s one statement, on MariaDB and on SQLite: insert the first attempt, or count one
    more (and clear a deferral)."""
    row = {**_bound(*_ROW), "attempts": 1, "retry_at": None}
    my = mysql_insert(_t).values(row)
    on_mariadb = my.on_duplicate_key_update(
        attempts=_t.c.attempts + 1,
        updated_at=my.inserted.updated_at,
        detail=my.inserted.detail,
        retry_at=None,
    )
    lite = sqlite_insert(_t).values(row)
    on_sqlite = lite.on_conflict_do_update(
        index_elements=[_t.c.transaction_id, _t.c.step],
        set_={
            "attempts": _t.c.attempts + 1,
            "updated_at": lite.excluded.updated_at,
            "detail": lite.excluded.detail,
            "retry_at": None,
        },
    )
    return on_mariadb, on_sqlite


def _arm_statements() -> tuple[Any, Any]:
    """`arm`'s one statement, on MariaDB and on SQLite: insert the armed step, or leave the row there
    as it is (the no-op update keeps MariaDB's insert from failing on the key)."""
    row = {**_bound(*_ROW, "retry_at"), "attempts": 0}
    my = mysql_insert(_t).values(row)
    return my.on_duplicate_key_update(step=_t.c.step), sqlite_insert(_t).values(row).on_conflict_do_nothing()


_START = _start_statements()
_ARM = _arm_statements()


def _record(row: object) -> StepRecord:
    return StepRecord(
        step=row.step,  # type: ignore[attr-defined]
        attempts=row.attempts,  # type: ignore[attr-defined]
        started_at=row.started_at,  # type: ignore[attr-defined]
        updated_at=row.updated_at,  # type: ignore[attr-defined]
        detail=row.detail,  # type: ignore[attr-defined]
        retry_at=row.retry_at,  # type: ignore[attr-defined]
    )


def _labelled_record(row: Any) -> StepRecord:
    return StepRecord(
        step=row.step__step,
        attempts=row.step__attempts,
        started_at=row.step__started_at,
        updated_at=row.step__updated_at,
        detail=row.step__detail,
        retry_at=row.step__retry_at,
    )


class SqlSagaSteps:
    def __init__(self, connection: AsyncConnection, transactions: SqlTransactionRepository) -> None:
        self._connection = connection
        self._transactions = transactions

    async def lock(self, transaction_id: TransactionId, *, skip_locked: bool = False) -> LockedSaga | None:
        found = await self._transactions.get_for_step(transaction_id, skip_locked=skip_locked)
        if found is None:
            return None
        tx, rows = found
        return LockedSaga(tx, {row.step__step: _labelled_record(row) for row in rows})

    async def get(self, transaction_id: TransactionId) -> Mapping[str, StepRecord]:
        rows = await self._connection.execute(select(_t).where(_t.c.transaction_id == transaction_id.value))
        return {row.step: _record(row) for row in rows}

    async def start(
        self, transaction_id: TransactionId, step: str, *, now: datetime, detail: str | None = None
    ) -> None:
        # One statement: insert the first attempt, or count one more (and clear a deferral).
        await self._upsert(_START, transaction_id, step, now, detail[:255] if detail else None)

    async def arm(
        self, transaction_id: TransactionId, step: str, *, now: datetime, until: datetime, detail: str
    ) -> None:
        await self._upsert(_ARM, transaction_id, step, now, detail[:255], retry_at=until)

    async def _upsert(
        self,
        statements: tuple[Any, Any],
        transaction_id: TransactionId,
        step: str,
        now: datetime,
        detail: str | None,
        **more: Any,
    ) -> None:
        on_mariadb, on_sqlite = statements
        statement = on_sqlite if self._connection.dialect.name == "sqlite" else on_mariadb
        row = {"transaction_id": transaction_id.value, "step": step, "started_at": now, "updated_at": now}
        await self._connection.execute(statement, {**row, "detail": detail, **more})

    def look_again_at(self, transaction_id: TransactionId, at: datetime) -> None:
        self._transactions.look_again_at(transaction_id, at)

    async def defer(
        self, transaction_id: TransactionId, step: str, *, now: datetime, until: datetime, detail: str
    ) -> None:
        # The step is due again at `until`, perhaps before the saga's last word: the sweepers look
        # then (or at the saga's word, if earlier). Not NULL: that is a save whose event, or whose
        # advance going on, moves it, and the advance that deferred this step has stopped.
        due = transactions.c.saga_due_at
        await self._connection.execute(
            update(transactions)
            .where(transactions.c.id == transaction_id.value)
            .values(saga_due_at=case((due.is_not(None) & (due < until), due), else_=literal(until, due.type)))
        )
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
