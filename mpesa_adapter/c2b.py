"""The paybill (C2B) endpoints' handlers: Daraja's validation and confirmation, to the use case.

Reached only through `CallbackEndpoints` (callback_server.py), which first checks the secret path
token, the caller's address, the body size and strict JSON, as for every other callback; a body that
is not a C2B notification is refused (400) and kept for review. Then:
- validation: the use case's answer goes back as `{"ResultCode": "0" | "C2B000xx", "ResultDesc": ...}`;
- confirmation: the use case settles it (a DEPOSIT, or SUSPENSE for a person; a repeat changes
  nothing) and M-Pesa gets `{"ResultCode": 0, "ResultDesc": "Success"}` whatever it became.
"""

from __future__ import annotations

from typing import Any, Protocol

from application.payments.paybill import Answer, PaybillPayment, Settled
from mpesa_adapter.callback_parsing import C2BNotification, cents

CONFIRMED = {"ResultCode": 0, "ResultDesc": "Success"}


class Paybill(Protocol):
    """application.payments.paybill.PaybillDeposits, as the endpoints use it."""

    async def validate(self, payment: PaybillPayment) -> Answer: ...

    async def confirm(self, payment: PaybillPayment) -> Settled: ...


def payment_of(notification: C2BNotification) -> PaybillPayment:
    return PaybillPayment(
        trans_id=notification.trans_id,
        shortcode=notification.shortcode,
        bill_ref=notification.bill_ref,
        amount_minor=cents(notification.amount),
        msisdn=notification.msisdn,
        raw=notification.raw.decode("utf-8", "replace"),
    )


async def validation(paybill: Paybill, notification: C2BNotification) -> dict[str, Any]:
    answer = await paybill.validate(payment_of(notification))
    return {"ResultCode": answer.result_code, "ResultDesc": answer.result_desc}


async def confirmation(paybill: Paybill, notification: C2BNotification) -> Settled:
    return await paybill.confirm(payment_of(notification))
