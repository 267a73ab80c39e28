"""Finding transactions the way an operator is asked about them: by id, by the M-Pesa receipt a
customer quotes, by the Deriv transaction id on a statement, or by a phone number, whole or as
Safaricom masks it (0722***678, 2547*****678: only the visible digits are compared, never a guess at
the hidden ones). Read-only; one short connection."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.tables import (
    deriv_transfers,
    deriv_withdrawals,
    mpesa_disbursements,
    mpesa_requests,
    transactions,
)

MAX_MATCHES = 50
_RECEIPT = re.compile(r"[A-Z0-9]{8,20}")
_DERIV_ID = re.compile(r"[0-9]{1,18}")
# 2547..., +2547..., 07..., 01..., with * or x for each hidden digit (the last 3 stay visible).
_PHONE = re.compile(r"\+?(254|0)([0-9]+)([*xX]*)([0-9]*)")


@dataclass(frozen=True, slots=True)
class TransactionMatchRow:
    transaction_id: str
    type: str
    status: str
    amount_cents: int
    currency: str
    matched_on: str
    phone: str
    created_at: datetime


def phone_pattern(query: str) -> str | None:
    """A LIKE pattern for the stored form (2547XXXXXXXX), or None when `query` is no phone number."""
    compact = re.sub(r"[\s-]", "", query)
    found = _PHONE.fullmatch(compact)
    if found is None:
        return None
    head, hidden, tail = found.group(2), found.group(3), found.group(4)
    if hidden and len(tail) < 3:
        return None  # too little visible to name one customer
    national = head + "_" * len(hidden) + tail  # the 9 digits after 254 / 0
    if len(national) != 9 or national[0] not in "17":
        return None
    return "254" + national


def mask(phone: str) -> str:
    return phone[:4] + "*" * max(0, len(phone) - 7) + phone[-3:] if len(phone) > 7 else "***"


async def search_transactions(engine: AsyncEngine, query: str, limit: int) -> list[TransactionMatchRow]:
    text = query.strip()
    t = transactions
    columns = (t.c.id, t.c.type, t.c.status, t.c.amount_cents, t.c.amount_currency, t.c.phone, t.c.created_at)
    searches: list[tuple[str, Select[tuple[object, ...]]]] = []
    try:
        searches.append(("TRANSACTION_ID", select(*columns).where(t.c.id == uuid.UUID(text))))
    except ValueError:
        pass
    upper = text.upper()
    if _RECEIPT.fullmatch(upper) and not upper.isdigit():
        receipts = ((mpesa_requests, "mpesa_receipt_number"), (mpesa_disbursements, "transaction_receipt"))
        for table, column in receipts:
            searches.append(
                (
                    "MPESA_RECEIPT",
                    select(*columns)
                    .join(table, table.c.transaction_id == t.c.id)
                    .where(table.c[column] == upper),
                )
            )
    if _DERIV_ID.fullmatch(text):
        for table in (deriv_transfers, deriv_withdrawals):
            searches.append(
                (
                    "DERIV_TRANSACTION_ID",
                    select(*columns)
                    .join(table, table.c.transaction_id == t.c.id)
                    .where(table.c.deriv_transaction_id == int(text)),
                )
            )
    pattern = phone_pattern(text)
    if pattern is not None:
        searches.append(("PHONE", select(*columns).where(t.c.phone.like(pattern))))
    found: dict[str, TransactionMatchRow] = {}
    async with engine.connect() as connection:
        for matched_on, statement in searches:
            rows = await connection.execute(statement.order_by(t.c.created_at.desc()).limit(limit))
            for row in rows:
                found.setdefault(
                    str(row.id),
                    TransactionMatchRow(
                        str(row.id), row.type, row.status, int(row.amount_cents), row.amount_currency,
                        matched_on, mask(row.phone), row.created_at,
                    ),
                )  # fmt: skip
    matches = sorted(found.values(), key=lambda m: m.created_at, reverse=True)
    return matches[:limit]
