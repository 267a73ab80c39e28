"""The read behind a payment notice: a transaction's notice facts and its user's contacts, one
statement (application.notifications.payment_notices.NoticeFacts).

The notice consumers once loaded the Transaction (with its attachment tables) and the User (with
its devices and its decrypted KYC snapshot) per notice and channel: three statements and most of
their CPU for six columns and two contacts. The contacts are plain columns of `users` (the unique
keys logins look up), so nothing here decrypts; the status changes on the bus carry no contact.
The same statement says which channels sent the notice already (their markers in the inbox), so a
notice delivered again after one channel failed sends only the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Label, bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncConnection

from application.notifications.payment_notices import NoticeFacts
from domain.payments.status import TransactionType
from domain.shared.ids import TransactionId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.email import Email
from domain.user.phone_number import PhoneNumber
from domain.wallet.money import Currency, Money
from persistence.tables import processed_events, transactions, users

_t, _u, _p = transactions, users, processed_events
_FACTS = (
    _t.c.type,
    _t.c.amount_cents,
    _t.c.amount_currency,
    _t.c.converted_amount_cents,
    _t.c.converted_amount_currency,
    _t.c.phone,
    _t.c.deriv_login_id,
    _u.c.phone.label("user_phone"),
    _u.c.email.label("user_email"),
    _u.c.email_verified,
)


def _marked(channel: str) -> Label[bool]:
    """Whether the channel's "sent" marker (an inbox row under its name) holds the event."""
    return (
        exists()
        .where(_p.c.consumer == bindparam(f"marker_{channel}"), _p.c.event_id == bindparam("event_id"))
        .label(f"sent_{channel}")
    )


_NOTICE = (
    select(*_FACTS, _marked("sms"), _marked("email"))
    .select_from(_t.join(_u, _u.c.id == _t.c.user_id))
    .where(_t.c.id == bindparam("tx_id"))
)


@dataclass(frozen=True, slots=True)
class NoticeRead:
    facts: NoticeFacts
    sent: frozenset[str]  # channels whose marker holds the event: sent before, not to send again


async def notice_facts(
    connection: AsyncConnection, tx_id: TransactionId, *, event_id: uuid.UUID, markers: Mapping[str, str]
) -> NoticeRead | None:
    """The facts of `tx_id`'s notice and which of the channels ("sms", "email") already sent the
    notice of `event_id` (`markers`: each channel's inbox name), or None when no such transaction
    exists."""
    params = {"tx_id": tx_id.value, "event_id": event_id, **{f"marker_{c}": m for c, m in markers.items()}}
    row = (await connection.execute(_NOTICE, params)).first()
    if row is None:
        return None
    converted = (
        None
        if row.converted_amount_cents is None or row.converted_amount_currency is None
        else Money(int(row.converted_amount_cents), Currency(row.converted_amount_currency))
    )
    facts = NoticeFacts(
        id=tx_id,
        type=TransactionType(row.type),
        amount=Money(int(row.amount_cents), Currency(row.amount_currency)),
        converted_amount=converted,
        phone=PhoneNumber(row.phone),
        deriv_login_id=DerivLoginId(row.deriv_login_id),
        user_phone=PhoneNumber(row.user_phone),
        user_email=Email(row.user_email),
        email_verified=bool(row.email_verified),
    )
    return NoticeRead(facts, frozenset(c for c in ("sms", "email") if getattr(row, f"sent_{c}")))
