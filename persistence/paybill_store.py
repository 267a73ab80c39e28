"""SQL adapter of application.payments.paybill.PaybillStore, on the unit of work's connection.

`c2b_payments` is the inbox of paybill payments: one row per M-Pesa TransID (unique), locked with
SELECT ... FOR UPDATE while a validation or confirmation is decided, so concurrent deliveries of one
payment are settled once. The payer's MSISDN is stored masked only.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from application.payments.paybill import PaybillPayment, Status, StoredPayment, shown_msisdn
from application.review.paybill_refund import OPEN, RefundStatus, StoredRefund
from domain.shared.ids import TransactionId, UserId, new_uuid7
from persistence.tables import c2b_payments, mpesa_callback_reviews, paybill_references, paybill_refunds

REVIEW_KIND = "c2b_confirmation"


class SqlPaybillStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def reference_of(self, user_id: UserId) -> str | None:
        t = paybill_references
        row = (await self._c.execute(select(t.c.reference).where(t.c.user_id == user_id.value))).first()
        return None if row is None else str(row.reference)

    async def add_reference(self, reference: str, user_id: UserId, *, now: datetime) -> bool:
        try:
            async with self._c.begin_nested():
                await self._c.execute(
                    insert(paybill_references).values(
                        reference=reference, user_id=user_id.value, created_at=now
                    )
                )
        except IntegrityError:
            return False
        return True

    async def user_of(self, reference: str) -> UserId | None:
        t = paybill_references
        row = (await self._c.execute(select(t.c.user_id).where(t.c.reference == reference))).first()
        return None if row is None else UserId(row.user_id)

    async def lock(self, trans_id: str) -> StoredPayment | None:
        t = c2b_payments
        row = (await self._c.execute(select(t).where(t.c.trans_id == trans_id).with_for_update())).first()
        return None if row is None else _stored(row)

    async def in_suspense(self, *, limit: int) -> list[StoredPayment]:
        t = c2b_payments
        rows = await self._c.execute(
            select(t).where(t.c.status == Status.SUSPENSE.value).order_by(t.c.updated_at, t.c.id).limit(limit)
        )
        return [_stored(row) for row in rows]

    async def close_reviews(self, trans_id: str, *, by: str, now: datetime) -> None:
        t = mpesa_callback_reviews
        await self._c.execute(
            update(t)
            .where(t.c.correlation_id == trans_id, t.c.kind == REVIEW_KIND, t.c.status == "OPEN")
            .values(status="RESOLVED", resolved_at=now, resolved_by=by[:64])
        )

    async def insert(
        self, payment: PaybillPayment, *, status: Status, now: datetime, **values: object
    ) -> bool:
        row: dict[str, Any] = {
            "id": new_uuid7(),
            "trans_id": payment.trans_id,
            "shortcode": payment.shortcode[:16],
            "bill_ref": payment.bill_ref[:32],
            "amount_cents": payment.amount_minor if payment.amount_minor is not None else 0,
            "amount_currency": "KES",
            "msisdn_shown": shown_msisdn(payment.msisdn),
            "status": status.value,
            "created_at": now,
            "updated_at": now,
            "raw_validation": payment.raw if status in (Status.VALIDATED, Status.REFUSED) else None,
            "raw_confirmation": None if status in (Status.VALIDATED, Status.REFUSED) else payment.raw,
            **_columns(values),
        }
        try:
            # No savepoint: a duplicate fails this one insert, which then wrote nothing (InnoDB and
            # SQLite undo a failed statement alone). A savepoint also hid a deadlock: InnoDB ends the
            # whole transaction, and ROLLBACK TO SAVEPOINT then failed with "does not exist".
            await self._c.execute(insert(c2b_payments).values(**row))
        except IntegrityError:
            return False
        return True

    async def update(self, trans_id: str, *, now: datetime, **values: object) -> None:
        await self._c.execute(
            update(c2b_payments)
            .where(c2b_payments.c.trans_id == trans_id)
            .values(updated_at=now, **_columns(values))
        )

    async def keep_for_review(
        self, payment: PaybillPayment, reason: str, detail: str, *, now: datetime
    ) -> None:
        raw = payment.raw.encode()
        await self._c.execute(
            insert(mpesa_callback_reviews).values(
                id=new_uuid7(),
                kind=REVIEW_KIND,
                reason=reason[:32],
                detail=detail[:255],
                correlation_id=payment.trans_id[:64],
                transaction_id=None,
                remote_addr=None,
                raw_body=raw,
                body_sha256=hashlib.sha256(raw).hexdigest(),
                status="OPEN",
                received_at=now,
            )
        )

    # --- refunds (application.review.paybill_refund); every writer holds the payment's row lock ---

    async def has_open_refund(self, trans_id: str) -> bool:
        return await self.open_refund(trans_id) is not None

    async def open_refund(self, trans_id: str) -> StoredRefund | None:
        t = paybill_refunds
        row = (
            await self._c.execute(
                select(t)
                .where(t.c.trans_id == trans_id, t.c.status.in_([s.value for s in OPEN]))
                .order_by(t.c.created_at.desc(), t.c.id.desc())
                .limit(1)
            )
        ).first()
        return None if row is None else _refund(row)

    async def refund_by_ocid(self, ocid: str) -> StoredRefund | None:
        t = paybill_refunds
        row = (
            await self._c.execute(
                select(t)
                .where(or_(t.c.originator_conversation_id == ocid, t.c.answered_ocid == ocid))
                .order_by(t.c.created_at.desc())
                .limit(1)
            )
        ).first()
        return None if row is None else _refund(row)

    async def add_refund(self, refund: StoredRefund, *, now: datetime) -> None:
        await self._c.execute(
            insert(paybill_refunds).values(
                id=new_uuid7(),
                trans_id=refund.trans_id,
                originator_conversation_id=refund.originator_conversation_id,
                amount_cents=refund.amount_minor,
                amount_currency="KES",
                status=refund.status.value,
                reason=refund.reason[:255],
                proposed_by=refund.proposed_by[:64],
                created_at=now,
                updated_at=now,
            )
        )

    async def update_refund(self, ocid: str, *, now: datetime, **values: object) -> None:
        t = paybill_refunds
        await self._c.execute(
            update(t).where(t.c.originator_conversation_id == ocid).values(updated_at=now, **_columns(values))
        )


def _refund(row: Any) -> StoredRefund:
    return StoredRefund(
        trans_id=row.trans_id,
        originator_conversation_id=row.originator_conversation_id,
        amount_minor=int(row.amount_cents),
        status=RefundStatus(row.status),
        reason=row.reason,
        proposed_by=row.proposed_by,
        approved_by=row.approved_by,
        answered_ocid=row.answered_ocid,
        conversation_id=row.conversation_id,
        reversal_receipt=row.reversal_receipt,
        result_code=row.result_code,
        result_desc=row.result_desc,
    )


def _stored(row: Any) -> StoredPayment:
    return StoredPayment(
        trans_id=row.trans_id,
        shortcode=row.shortcode,
        bill_ref=row.bill_ref,
        amount_minor=int(row.amount_cents),
        msisdn_shown=row.msisdn_shown,
        status=Status(row.status),
        result_code=row.result_code,
        user_id=None if row.user_id is None else UserId(row.user_id),
        transaction_id=None if row.transaction_id is None else TransactionId(row.transaction_id),
        reason=row.reason,
        proposed_user_id=None if row.proposed_user_id is None else UserId(row.proposed_user_id),
        proposed_by=row.proposed_by,
        raw_confirmation=row.raw_confirmation,
    )


def _columns(values: dict[str, object]) -> dict[str, object]:
    """Domain values as column values (ids as UUIDs, statuses as text)."""
    out: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, UserId | TransactionId):
            value = value.value
        elif isinstance(value, Status | RefundStatus):
            value = value.value
        out[key] = value
    return out
