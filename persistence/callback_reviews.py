"""`mpesa_callback_reviews` inside the unit of work: M-Pesa answers kept for a person, and the STK
callbacks parked until the saga stores the request they answer (application.payments.mpesa_evidence)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from application.payments.mpesa_evidence import UNKNOWN_ID, Arrival, KeptAnswer, ParkedCallback
from domain.shared.ids import TransactionId, new_uuid7
from persistence.tables import mpesa_callback_reviews as t

# status: OPEN for a person; ADOPTED when a parked STK callback was applied to its request.
OPEN = "OPEN"
ADOPTED = "ADOPTED"
ADOPTED_BY = "penpay:adopted-early-callback"

_INSERT = insert(t)
_ANY_PARKED = select(t.c.id).where(t.c.correlation_id == bindparam("cid")).where(t.c.status == OPEN).limit(1)
# The request's own parked rows, found (and so locked) by their correlation_id. Left to itself,
# MariaDB read a table of few OPEN rows through (status, received_at) for the ORDER BY, which
# locked every OPEN row and the gaps between: adoptions waited on and deadlocked with each other
# (7-8 deposits in a bench run of 100 lost theirs and waited for the STK-callback timer).
CORRELATION_INDEX = "ix_mpesa_callback_reviews_correlation_id"
_PARKED = (
    select(t.c.id, t.c.kind, t.c.raw_body, t.c.remote_addr, t.c.received_at)
    .with_hint(t, f"FORCE INDEX ({CORRELATION_INDEX})", dialect_name="mysql")
    .with_hint(t, f"FORCE INDEX ({CORRELATION_INDEX})", dialect_name="mariadb")
    .where(t.c.kind == bindparam("kind"))
    .where(t.c.reason == UNKNOWN_ID)
    .where(t.c.status == OPEN)
    .where(t.c.correlation_id == bindparam("cid"))
    .order_by(t.c.received_at, t.c.id)
    .with_for_update()
)
_ADOPT = (
    update(t)
    .where(t.c.id == bindparam("b_id"))
    .where(t.c.status == OPEN)
    .values(
        status=ADOPTED,
        transaction_id=bindparam("b_tx"),
        resolved_at=bindparam("b_at"),
        resolved_by=ADOPTED_BY,
    )
)


def review_row(answer: KeptAnswer) -> dict[str, object]:
    arrival = answer.arrival
    cid = answer.correlation_id
    return {
        "id": new_uuid7(),
        "kind": str(arrival.kind)[:32],
        "reason": answer.reason,
        "detail": answer.detail[:255],
        "correlation_id": cid[:64] if cid else None,
        "transaction_id": None if answer.transaction_id is None else answer.transaction_id.value,
        "remote_addr": arrival.remote_addr[:45] if arrival.remote_addr else None,
        "raw_body": arrival.raw,
        "body_sha256": hashlib.sha256(arrival.raw).hexdigest(),
        "status": OPEN,
        "received_at": arrival.received_at,
    }


class SqlCallbackReviews:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def keep(self, answer: KeptAnswer) -> None:
        await self._connection.execute(_INSERT, review_row(answer))

    async def any_parked(self, correlation_id: str) -> bool:
        return (await self._connection.execute(_ANY_PARKED, {"cid": correlation_id})).first() is not None

    async def lock_parked(self, kind: str, correlation_id: str) -> Sequence[ParkedCallback]:
        rows = (await self._connection.execute(_PARKED, {"kind": kind, "cid": correlation_id})).all()
        return [
            ParkedCallback(row.id, Arrival(row.kind, bytes(row.raw_body), row.remote_addr, row.received_at))
            for row in rows
        ]

    async def mark_adopted(self, review_id: object, transaction_id: TransactionId, *, now: datetime) -> None:
        assert isinstance(review_id, uuid.UUID)
        await self._connection.execute(_ADOPT, {"b_id": review_id, "b_tx": transaction_id.value, "b_at": now})
