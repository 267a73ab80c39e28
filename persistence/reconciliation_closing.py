"""Closing a reconciliation item (application.reconciliation.closing) on the database: the item's
row locked, checked, marked RESOLVED with the operator's name and reason, and audited, in one
transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from application.reconciliation.closing import (
    OPEN,
    RESOLVED,
    ProviderRecord,
    StoredItem,
    check_closable,
)
from application.reconciliation.rules import Amount
from persistence.tables import reconciliation_items
from persistence.unit_of_work import SqlUnitOfWork

SUBJECT = "ReconciliationItem"
_t = reconciliation_items


def record_of(row: Any) -> ProviderRecord:
    amount = (
        None
        if row.provider_amount_cents is None
        else Amount(int(row.provider_amount_cents), str(row.provider_amount_currency))
    )
    return ProviderRecord(str(row.item_class), row.provider_ref, amount)


def stored_item_of(row: Any) -> StoredItem:
    written_off = row.write_off_posting_id is not None
    return StoredItem(
        item_key=str(row.item_key),
        review_status=str(row.review_status),
        holds_suspense=row.suspense_posting_id is not None and not written_off,
        record=record_of(row),
        write_off_proposed_by=None if written_off else row.write_off_proposed_by,
    )


class SqlItemClosings:
    def __init__(self, unit_of_work: Callable[[str], SqlUnitOfWork]) -> None:
        self._uow = unit_of_work  # actor -> unit of work (the operator's name goes on the audit)

    async def close(self, item_key: str, *, staff: str, reason: str) -> StoredItem:
        async with self._uow(staff) as uow:
            conn = uow.connection
            row = (await conn.execute(select(_t).where(_t.c.item_key == item_key).with_for_update())).first()
            item = check_closable(None if row is None else stored_item_of(row))
            now = uow.clock.now()
            await conn.execute(
                update(_t)
                .where(_t.c.item_key == item.item_key, _t.c.review_status == OPEN)
                .values(
                    review_status=RESOLVED,
                    resolved_by=staff,
                    resolution=reason,
                    resolved_at=now,
                    updated_at=now,
                )
            )
            uow.audit(
                action="reconciliation.item_closed",
                subject_type=SUBJECT,
                subject_id=item_key[:64],
                details={"class": item.record.item_class, "reason": reason, "closed_by": staff},
            )
            await uow.commit()
        return StoredItem(item.item_key, RESOLVED, item.holds_suspense, item.record)
