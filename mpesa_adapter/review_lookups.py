"""application.review.ports.MpesaLookups over Daraja: what M-Pesa says about a review's evidence.

STK Query is synchronous: `stk_outcome` asks it and writes nothing (the approval records what it
proves). Transaction Status answers asynchronously, at the callback endpoints (possibly another
process), whose inbox checks the answer as it checks the sagas' own (it must name our payout, its
ConversationID and amount; naming none of our ids, our payee) and records it: the payout CONFIRMED
with the receipt, or a row in `mpesa_callback_reviews` saying why not. `check_receipt` asks about
the receipt under our payout's OriginatorConversationID (the Occasion), then reads those records
for a bounded number of polls.

A push whose answer was lost is looked up in M-Pesa's list of the STK shortcode's payments (Pull
Transactions) and in the STK callbacks parked for want of its CheckoutRequestID (`lost_push_records`);
once two people record the id, `take_in_parked` applies the parked callback as the saga would.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from application.payments.errors import CallUnavailable
from application.payments.lost_push import LostPushRecords
from application.review.ports import ReceiptCheck, StkAnswer, StkOutcome
from mpesa_adapter import errors
from mpesa_adapter.callback_store import CONFIRMED, FAILED, REVIEW, SqlCallbackInbox
from mpesa_adapter.confirmer import CallbackConfirmer, DarajaQueries
from mpesa_adapter.lost_push_reads import LostPushReads
from mpesa_adapter.review_table import review_tally
from mpesa_adapter.types import StkQueryStatus
from persistence.tables import c2b_payments, mpesa_disbursements, mpesa_requests

log = logging.getLogger("penpay.mpesa.review")

_NOT_ANSWERED = (errors.SpikeArrest, errors.TransportError, errors.ForeignAnswer)


class DarajaReviewLookups:
    """The inbox that records Daraja's answers comes from the composition root
    (penpay/wiring/api.py): the lookups read it, they do not build it."""

    def __init__(
        self,
        client: DarajaQueries,  # the same two read-only Daraja calls the confirmer makes
        engine: AsyncEngine,
        *,
        inbox: SqlCallbackInbox,  # the composition root's (penpay.bootstrap.callback_inbox)
        lost_push: LostPushReads | None = None,  # None: a lost push cannot be looked up from here
        polls: int = 100,
        poll_interval: float = 0.1,
    ) -> None:
        self._client = client
        self._engine = engine
        self._store = inbox
        self._lost_push = lost_push
        self._polls = polls
        self._interval = poll_interval

    async def stk_outcome(self, *, checkout_request_id: str, merchant_request_id: str | None) -> StkOutcome:
        try:
            result = await self._client.stk_query(
                checkout_request_id, merchant_request_id=merchant_request_id
            )
        except errors.ForeignAnswer as foreign:
            # about another request: never a status; kept for review and alerted, as the sagas do
            await CallbackConfirmer(self._client, self._store).keep_foreign_answer(foreign)
            return StkOutcome(StkAnswer.OPEN, detail=str(foreign))
        except _NOT_ANSWERED as error:
            return StkOutcome(StkAnswer.OPEN, detail=f"STK Query not answered: {type(error).__name__}")
        except errors.DarajaError as error:
            return StkOutcome(StkAnswer.OPEN, detail=f"STK Query refused: {error.error_code}")
        text = result.result_code or ""
        code = int(text) if text.lstrip("-").isdigit() else None
        detail = f"STK Query: {result.status} {result.result_code or ''} {result.result_desc or ''}".strip()
        if result.status is StkQueryStatus.COMPLETED:
            return StkOutcome(StkAnswer.PAID, code, detail)
        if result.status is StkQueryStatus.FAILED:
            return StkOutcome(StkAnswer.NOT_PAID, code, detail)
        return StkOutcome(StkAnswer.OPEN, code, detail)  # being processed, or not found yet

    async def check_receipt(self, *, originator_conversation_id: str, receipt: str) -> ReceiptCheck:
        ocid = originator_conversation_id
        settled = await self._settled(ocid, receipt)
        if settled is not None:
            return settled
        if await self._held_elsewhere(ocid, receipt):
            return ReceiptCheck(False, f"{receipt} is already recorded for another payout")
        before = await review_tally(self._engine, ocid, None)
        try:
            accepted = await self._client.transaction_status(
                transaction_id=receipt, occasion=ocid, remarks="PenPay review evidence"
            )
        except _NOT_ANSWERED as error:
            return ReceiptCheck(None, f"Transaction Status not sent: {type(error).__name__}")
        except errors.DarajaError as error:
            return ReceiptCheck(None, f"Transaction Status refused: {error.error_code}")
        query = accepted.conversation_id
        for _ in range(self._polls):
            settled = await self._settled(ocid, receipt)
            if settled is not None:
                return settled
            now = await review_tally(self._engine, ocid, query)
            if now.count > before.count:
                return ReceiptCheck(
                    False, f"M-Pesa does not confirm {receipt} for this payout: {now.describe()}"
                )
            await asyncio.sleep(self._interval)
        return ReceiptCheck(None, f"Transaction Status asked (ConversationID {query}), no answer yet")

    async def _settled(self, ocid: str, receipt: str) -> ReceiptCheck | None:
        row = await self._store.disbursement(ocid)
        if row is None:
            return ReceiptCheck(False, "no such payout")
        if row.status == CONFIRMED:
            if row.transaction_receipt == receipt:
                return ReceiptCheck(True, f"Transaction Status confirms {receipt} for this payout")
            held = row.transaction_receipt
            return ReceiptCheck(False, f"M-Pesa confirmed this payout as {held}, not {receipt}")
        if row.status == FAILED:
            return ReceiptCheck(False, "M-Pesa says this payout was not made")
        if row.status == REVIEW:
            return ReceiptCheck(False, "M-Pesa's answers about this payout contradict each other")
        return None

    async def _held_elsewhere(self, ocid: str, receipt: str) -> bool:
        """Another disbursement holds this receipt (UNIQUE): it is that payout's, not this one's."""
        t = mpesa_disbursements
        async with self._engine.connect() as conn:
            found = await conn.execute(
                select(t.c.transaction_id).where(
                    t.c.transaction_receipt == receipt, t.c.originator_conversation_id != ocid
                )
            )
            return found.first() is not None

    async def lost_push_records(self, *, since: datetime, until: datetime) -> LostPushRecords:
        if self._lost_push is None:
            raise CallUnavailable("Pull Transactions is not configured for this API")
        return await self._lost_push.records(since=since, until=until)

    async def receipt_held(self, receipt: str) -> bool:
        async with self._engine.connect() as conn:
            for found in (
                select(mpesa_requests.c.transaction_id).where(
                    mpesa_requests.c.mpesa_receipt_number == receipt
                ),
                select(c2b_payments.c.id).where(c2b_payments.c.trans_id == receipt),
            ):
                if (await conn.execute(found.limit(1))).first() is not None:
                    return True
        return False

    async def take_in_parked(self, checkout_request_id: str) -> bool:
        return bool(await self._store.adopt_early_stk_callbacks(checkout_request_id, parked=True))
