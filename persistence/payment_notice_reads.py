"""The read behind a payment notice: a transaction's notice facts and its user's contacts, one
statement (application.notifications.payment_notices.NoticeFacts).

The notice consumers once loaded the Transaction (with its attachment tables) and the User (with
its devices and its decrypted KYC snapshot) per notice and channel: three statements and most of
their CPU for six columns and two contacts. The contacts are plain columns of `users` (the unique
keys logins look up), so nothing here decrypts; the status changes on the bus carry no contact.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from application.notifications.payment_notices import NoticeFacts
from domain.payments.status import TransactionType
from domain.shared.ids import TransactionId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.email import Email
from domain.user.phone_number import PhoneNumber
from domain.wallet.money import Currency, Money
from persistence.tables import transactions, users

_t, _u = transactions, users
_NOTICE_FACTS = (
    select(
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
    .select_from(_t.join(_u, _u.c.id == _t.c.user_id))
    .where(_t.c.id == bindparam("tx_id"))
)


async def notice_facts(connection: AsyncConnection, tx_id: TransactionId) -> NoticeFacts | None:
    """The facts of `tx_id`'s notice, or None when no such transaction exists."""
    row = (await connection.execute(_NOTICE_FACTS, {"tx_id": tx_id.value})).first()
    if row is None:
        return None
    converted = (
        None
        if row.converted_amount_cents is None or row.converted_amount_currency is None
        else Money(int(row.converted_amount_cents), Currency(row.converted_amount_currency))
    )
    return NoticeFacts(
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
