"""The four-eyes write-off of a reconciliation item's SUSPENSE (application.reconciliation.write_off)
on the database: each step under the item's row lock, in one transaction with its audit record; the
approval books bookings.reconciliation_write_off once (the item is RESOLVED in the same commit)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import and_, select, update

from application.ledger import book
from application.payments import bookings
from application.reconciliation.closing import OPEN, RESOLVED, StoredItem
from application.reconciliation.write_off import (
    FourEyesRequired,
    WrittenOff,
    check_decidable,
    check_proposable,
)
from domain.wallet.account_kind import AccountKind
from domain.wallet.money import Currency, Money
from persistence.reconciliation_closing import SUBJECT, stored_item_of
from persistence.tables import ledger_accounts, ledger_entries, reconciliation_items
from persistence.unit_of_work import SqlUnitOfWork

_t = reconciliation_items


class SqlWriteOffs:
    def __init__(self, unit_of_work: Callable[[str], SqlUnitOfWork]) -> None:
        self._uow = unit_of_work  # actor -> unit of work (the person acting is the audit's actor)

    @staticmethod
    async def _locked(uow: SqlUnitOfWork, item_key: str) -> tuple[StoredItem | None, uuid.UUID | None]:
        query = select(_t).where(_t.c.item_key == item_key).with_for_update()
        row = (await uow.connection.execute(query)).first()
        if row is None:
            return None, None
        return stored_item_of(row), row.suspense_posting_id

    @staticmethod
    def _audit(uow: SqlUnitOfWork, action: str, item_key: str, **details: str) -> None:
        uow.audit(action=action, subject_type=SUBJECT, subject_id=item_key[:64], details=dict(details))

    async def propose(self, item_key: str, *, staff: str, reason: str) -> None:
        async with self._uow(staff) as uow:
            item, _ = await self._locked(uow, item_key)
            check_proposable(item)
            now = uow.clock.now()
            await uow.connection.execute(
                update(_t)
                .where(_t.c.item_key == item_key)
                .values(
                    write_off_proposed_by=staff,
                    write_off_reason=reason,
                    write_off_proposed_at=now,
                    updated_at=now,
                )
            )
            self._audit(uow, "reconciliation.write_off_proposed", item_key, proposed_by=staff, reason=reason)
            await uow.commit()

    async def approve(self, item_key: str, *, staff: str) -> WrittenOff:
        async with self._uow(staff) as uow:
            item, suspense_posting = await self._locked(uow, item_key)
            found = check_decidable(item)
            proposer = found.write_off_proposed_by or ""
            if proposer == staff:
                self._audit(
                    uow,
                    "reconciliation.write_off_four_eyes_refused",
                    item_key,
                    proposed_by=proposer,
                    approver=staff,
                )
                await uow.commit()  # the refused attempt is on record too
                raise FourEyesRequired("the proposer cannot approve their own write-off")
            assert suspense_posting is not None  # check_decidable: it holds suspense
            amount, into_float = await self._suspense_line(uow, suspense_posting)
            posting = await bookings.reconciliation_write_off(
                uow.ledger, amount, into_float=into_float, note=item_key
            )
            await book(uow, posting)
            now = uow.clock.now()
            reason = (
                await uow.connection.execute(select(_t.c.write_off_reason).where(_t.c.item_key == item_key))
            ).scalar_one()
            await uow.connection.execute(
                update(_t)
                .where(_t.c.item_key == item_key, _t.c.review_status == OPEN)
                .values(
                    review_status=RESOLVED,
                    resolved_by=staff,
                    resolution=reason,
                    resolved_at=now,
                    write_off_posting_id=posting.id.value,
                    updated_at=now,
                )
            )
            self._audit(
                uow,
                "reconciliation.write_off_approved",
                item_key,
                proposed_by=proposer,
                approved_by=staff,
                reason=str(reason),
                posting_id=str(posting.id.value),
                amount=f"{amount.amount_minor} {amount.currency.value}",
            )
            await uow.commit()
        return WrittenOff(item_key, str(posting.id.value))

    async def reject(self, item_key: str, *, staff: str, reason: str) -> None:
        async with self._uow(staff) as uow:
            item, _ = await self._locked(uow, item_key)
            found = check_decidable(item)
            now = uow.clock.now()
            await uow.connection.execute(
                update(_t)
                .where(_t.c.item_key == item_key)
                .values(
                    write_off_proposed_by=None,
                    write_off_reason=None,
                    write_off_proposed_at=None,
                    updated_at=now,
                )
            )
            self._audit(
                uow,
                "reconciliation.write_off_rejected",
                item_key,
                proposed_by=found.write_off_proposed_by or "",
                rejected_by=staff,
                reason=reason,
            )
            await uow.commit()

    @staticmethod
    async def _suspense_line(uow: SqlUnitOfWork, posting_id: uuid.UUID) -> tuple[Money, bool]:
        """The SUSPENSE line the item's suspense posting booked: its amount, and whether the money came
        into the float (SUSPENSE credited) or left it (SUSPENSE debited)."""
        e, a = ledger_entries, ledger_accounts
        row = (
            await uow.connection.execute(
                select(e.c.amount_cents, e.c.amount_currency, e.c.side)
                .select_from(e.join(a, e.c.account_id == a.c.id))
                .where(and_(e.c.posting_id == posting_id, a.c.kind == AccountKind.SUSPENSE.value))
            )
        ).one()
        return Money(int(row.amount_cents), Currency(str(row.amount_currency))), str(row.side) == "CREDIT"
