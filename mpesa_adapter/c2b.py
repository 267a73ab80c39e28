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

from sqlalchemy.exc import OperationalError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

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


def _lock_conflict(error: BaseException) -> bool:
    """InnoDB ended the transaction to break a deadlock (1213) or a lock wait ran out (1205): the
    whole unit of work is to be run again. Two deliveries of one new TransID take the same gap lock
    and both insert; one is ended by the server."""
    return isinstance(error, OperationalError) and getattr(error.orig, "args", (None,))[0] in (1205, 1213)


# Both use cases are idempotent by TransID (locked read, then decide): running one again after the
# server ended its transaction is running it for the first time. M-Pesa does not redeliver a
# confirmation answered with an error, so without this it waited for reconciliation in suspense.
def _again_on_lock_conflict() -> AsyncRetrying:
    # one per call: a retrying object keeps its attempt's state, which concurrent calls would share
    return AsyncRetrying(
        retry=retry_if_exception(_lock_conflict),
        stop=stop_after_attempt(3),
        wait=wait_random_exponential(multiplier=0.05, max=0.5),
        reraise=True,
    )


async def validation(paybill: Paybill, notification: C2BNotification) -> dict[str, Any]:
    answer: Answer = await _again_on_lock_conflict()(paybill.validate, payment_of(notification))
    return {"ResultCode": answer.result_code, "ResultDesc": answer.result_desc}


async def confirmation(paybill: Paybill, notification: C2BNotification) -> Settled:
    settled: Settled = await _again_on_lock_conflict()(paybill.confirm, payment_of(notification))
    return settled
