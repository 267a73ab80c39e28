"""What M-Pesa's own records show around an STK push whose answer was lost: Pull Transactions of
the STK shortcode (a paid push's payment is listed under the AccountReference it carried) and the
paid STK callbacks parked for want of a CheckoutRequestID no push of ours held. Read-only; the saga
(application.payments.saga) and the review queue judge them (application.payments.lost_push)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from application.payments.errors import CallUnavailable
from application.payments.lost_push import LostPushRecords, ParkedPayment, PulledPayment
from application.payments.mpesa_evidence import UNKNOWN_ID
from mpesa_adapter import errors
from mpesa_adapter.callback_parsing import MalformedCallback, StkCallback, parse_stk_callback, strict_json
from mpesa_adapter.pull_reads import PullReads
from mpesa_adapter.review_table import mpesa_callback_reviews
from mpesa_adapter.routes import CallbackKind
from persistence.callback_reviews import OPEN


class LostPushReads:
    def __init__(self, pulls: PullReads, engine: AsyncEngine) -> None:
        self._pulls = pulls
        self._engine = engine

    async def records(self, *, since: datetime, until: datetime) -> LostPushRecords:
        """Raises CallUnavailable when M-Pesa's list cannot be read now (never an empty list)."""
        try:
            pulled = await self._pulls.pulled(since, until, shortcode=self._pulls.shortcodes[0])
        except errors.MpesaAdapterError as failed:
            raise CallUnavailable(f"Pull Transactions: {failed}") from None
        return LostPushRecords(
            pulled=tuple(PulledPayment(p.receipt, p.amount_cents, p.bill_reference) for p in pulled),
            parked=await self._parked_payments(since),
        )

    async def _parked_payments(self, since: datetime) -> tuple[ParkedPayment, ...]:
        """Paid STK callbacks parked since `since` because no push of ours held their id."""
        t = mpesa_callback_reviews
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(t.c.raw_body)
                .where(t.c.status == OPEN)
                .where(t.c.received_at >= since)
                .where(t.c.kind == CallbackKind.STK.value)
                .where(t.c.reason == UNKNOWN_ID)
            )
            bodies = [bytes(row.raw_body) for row in rows]
        found: list[ParkedPayment] = []
        for raw in bodies:
            try:
                cb = parse_stk_callback(strict_json(raw), raw)
            except MalformedCallback:
                continue  # parked as it came; the callback queue shows it to a person
            if cb.succeeded and cb.receipt and cb.checkout_request_id:
                found.append(_parked(cb))
        return tuple(found)


def _parked(cb: StkCallback) -> ParkedPayment:
    cents = None if cb.amount is None else cb.amount * 100
    return ParkedPayment(
        checkout_request_id=cb.checkout_request_id,
        merchant_request_id=cb.merchant_request_id,
        receipt=cb.receipt or "",
        amount_minor=int(cents) if cents is not None and cents == cents.to_integral_value() else None,
        phone_shown=cb.phone or cb.phone_shown,
    )
