"""A paybill payment in suspense given back to its payer: Daraja's Reversal API, by two people.

Since 2026 M-Pesa shows the payer's MSISDN masked (`0722***000`), so a B2C cannot reach them; the
Reversal API returns a C2B payment to whoever paid it, named by its TransID. An operator proposes
the refund (with why); an approver, never the proposer, carries it out. The saga of one refund:

  PROPOSED --approve--> SENDING (intent committed: the one OriginatorConversationID, chosen when it
                                 was proposed, and who approved)
           --Reversal--> ACCEPTED (Daraja took it) | UNKNOWN (no answer: it may have left) |
                         FAILED (Daraja refused the request: nothing moved)
           --Result / Transaction Status--> REFUNDED (Dr SUSPENSE / Cr MPESA_FLOAT booked, the
                         payment REFUNDED) | FAILED (M-Pesa's final refusal: it stays in suspense)
  PROPOSED --reject--> REJECTED

A request that may have left is never sent again: approving it again (any approver but the proposer)
asks Transaction Status about the same OriginatorConversationID, and the answer settles it when it
arrives. A result is used only when it names our request (our OriginatorConversationID, or the one
the gateway's answer named; the ConversationID we hold; the TransID and amount when it gives them).
Anything else changes nothing and is kept for a person. While a refund is open the payment can be
neither assigned nor refunded again; every step is an audit record with both names.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

import structlog

from application.alerts import raise_alert
from application.ledger import book
from application.payments import bookings
from application.payments.paybill import PaybillStore, PaybillUnitOfWork, Status, StoredPayment
from application.review.errors import (
    ActionNotPossible,
    FourEyesRequired,
    ProposalAlreadyOpen,
    ProposalNotOpen,
    ReviewActionNotFound,
)
from domain.shared.errors import InvalidValue
from domain.shared.ids import new_uuid7
from domain.wallet.money import Currency, Money

log = structlog.get_logger("penpay.paybill.refund")

SUBJECT = "PaybillPayment"
REFUND_ALERT = "paybill_refund"
ANSWER_ALERT = "mpesa_foreign_answer"


class RefundStatus(StrEnum):
    PROPOSED = "PROPOSED"
    SENDING = "SENDING"  # approved; the intent is committed before the call
    ACCEPTED = "ACCEPTED"  # Daraja accepted the request; its Result is awaited
    UNKNOWN = "UNKNOWN"  # no answer: it may have left; Transaction Status resolves it
    REFUNDED = "REFUNDED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"


OPEN = frozenset({RefundStatus.PROPOSED, RefundStatus.SENDING, RefundStatus.ACCEPTED, RefundStatus.UNKNOWN})
IN_FLIGHT = frozenset({RefundStatus.SENDING, RefundStatus.ACCEPTED, RefundStatus.UNKNOWN})


@dataclass(frozen=True, slots=True)
class StoredRefund:
    trans_id: str
    originator_conversation_id: str
    amount_minor: int
    status: RefundStatus
    reason: str
    proposed_by: str
    approved_by: str | None = None
    answered_ocid: str | None = None
    conversation_id: str | None = None
    reversal_receipt: str | None = None
    result_code: str | None = None
    result_desc: str | None = None


@dataclass(frozen=True, slots=True)
class ReversalAccepted:
    originator_conversation_id: str  # as the gateway's answer named it
    conversation_id: str


class ReversalOutcomeUnknown(Exception):
    """The request may have reached M-Pesa (timeout, connection lost, internal error)."""


class ReversalRefused(Exception):
    """Daraja refused the request itself (nothing moved)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Reversals(Protocol):
    """Daraja's Reversal API and Transaction Status about a reversal (mpesa_adapter.reversal)."""

    async def request_reversal(
        self, *, originator_conversation_id: str, trans_id: str, amount_minor: int, remarks: str
    ) -> ReversalAccepted:
        """Raises ReversalOutcomeUnknown or ReversalRefused."""
        ...

    async def ask_reversal_status(self, *, originator_conversation_id: str) -> None:
        """Ask Transaction Status; its answer arrives at the reversal status endpoint."""
        ...


class RefundStore(PaybillStore, Protocol):
    async def open_refund(self, trans_id: str) -> StoredRefund | None: ...

    async def refund_by_ocid(self, ocid: str) -> StoredRefund | None:
        """By our OriginatorConversationID or the one the gateway's answer named (not locked: every
        writer of a refund holds its payment's c2b_payments row lock first)."""
        ...

    async def add_refund(self, refund: StoredRefund, *, now: datetime) -> None: ...

    async def update_refund(self, ocid: str, *, now: datetime, **values: object) -> None: ...


class RefundUnitOfWork(PaybillUnitOfWork, Protocol):
    @property
    def paybill(self) -> RefundStore: ...


@dataclass(frozen=True, slots=True)
class ReversalResult:
    """What M-Pesa said about one reversal: its Result, or Transaction Status about it."""

    originator_conversation_id: str | None
    conversation_id: str | None
    succeeded: bool  # M-Pesa reversed the payment
    final: bool  # a definite answer (succeeded or failed for good); else it is still pending
    result_code: str
    result_desc: str
    original_trans_id: str | None  # the C2B TransID reversed, when the answer names it
    receipt: str | None  # the reversal's own receipt
    amount: Decimal | None  # KES, when named
    raw: str
    via: str  # "result" | "status"


@dataclass(frozen=True, slots=True)
class RefundView:
    trans_id: str
    status: RefundStatus
    originator_conversation_id: str
    proposed_by: str
    approved_by: str | None
    detail: str = ""


def new_originator_conversation_id() -> str:
    """The refund's one request id, chosen when proposed (B2C's form with a REV tag)."""
    return f"PENPAY-REV-{uuid.UUID(str(new_uuid7())).hex}"


class SuspenseRefunds:
    def __init__(
        self, *, unit_of_work: Callable[[], RefundUnitOfWork], reversals: Reversals | None = None
    ) -> None:
        self._uow = unit_of_work
        self._reversals = reversals

    # --- the review action ---------------------------------------------------------------------

    async def propose(self, *, staff: str, trans_id: str, reason: str) -> RefundView:
        """Propose giving the suspense payment back to its payer. Proposing again while one is open
        changes nothing (ProposalAlreadyOpen)."""
        why = _reason(reason)
        async with self._uow() as uow:
            stored = await _suspended(uow, trans_id)
            if stored.proposed_by is not None:
                raise ProposalAlreadyOpen(f"{stored.proposed_by} proposed an assignment of it already")
            if stored.amount_minor <= 0 or stored.amount_minor % 100:
                raise ActionNotPossible("M-Pesa reverses whole shillings only; this amount is not one")
            open_one = await uow.paybill.open_refund(stored.trans_id)
            if open_one is not None:
                raise ProposalAlreadyOpen(f"{open_one.proposed_by} proposed its refund already")
            refund = StoredRefund(
                trans_id=stored.trans_id,
                originator_conversation_id=new_originator_conversation_id(),
                amount_minor=stored.amount_minor,
                status=RefundStatus.PROPOSED,
                reason=why,
                proposed_by=staff,
            )
            await uow.paybill.add_refund(refund, now=uow.clock.now())
            _audit(uow, "review.paybill.refund_proposed", refund, staff, None, why)
            await uow.commit()
        return _view(refund)

    async def reject(self, *, staff: str, trans_id: str, reason: str) -> None:
        why = _reason(reason)
        async with self._uow() as uow:
            stored = await _suspended(uow, trans_id)
            refund = await uow.paybill.open_refund(stored.trans_id)
            if refund is None or refund.status is not RefundStatus.PROPOSED:
                raise ProposalNotOpen("no refund of this payment waits for a decision")
            if refund.proposed_by == staff:
                raise FourEyesRequired("the proposer cannot decide their own proposal")
            await uow.paybill.update_refund(
                refund.originator_conversation_id, now=uow.clock.now(), status=RefundStatus.REJECTED
            )
            _audit(uow, "review.paybill.refund_rejected", refund, refund.proposed_by, staff, why)
            await uow.commit()

    async def approve(self, *, staff: str, trans_id: str) -> RefundView:
        """Carry out the open proposal: commit the intent, then ask M-Pesa to reverse the payment.
        Approving a refund already on its way sends nothing: it asks Transaction Status instead."""
        if self._reversals is None:
            raise ActionNotPossible("M-Pesa's Reversal API is not configured here")
        async with self._uow() as uow:
            stored = await uow.paybill.lock(trans_id.strip().upper())
            if stored is None:
                raise ReviewActionNotFound("no paybill payment with this TransID", field="trans_id")
            refund = await uow.paybill.open_refund(stored.trans_id)
            if refund is None:
                if stored.status is Status.REFUNDED:
                    raise ActionNotPossible("the payment was refunded already")
                raise ProposalNotOpen("no refund is proposed for this payment")
            if refund.proposed_by == staff:
                _audit(uow, "review.paybill.four_eyes_refused", refund, refund.proposed_by, staff, "refund")
                await uow.commit()  # the refused attempt is on record too
                raise FourEyesRequired("the proposer cannot approve their own proposal")
            if refund.status in IN_FLIGHT:
                _audit(uow, "review.paybill.refund_status_asked", refund, refund.proposed_by, staff, "")
                await uow.commit()
                in_flight = True
            else:
                if stored.status is not Status.SUSPENSE:
                    raise ActionNotPossible(f"the payment is {stored.status.value}, not in suspense")
                refund = _with(refund, status=RefundStatus.SENDING, approved_by=staff)
                await uow.paybill.update_refund(
                    refund.originator_conversation_id,
                    now=uow.clock.now(),
                    status=RefundStatus.SENDING,
                    approved_by=staff,
                )
                _audit(uow, "review.paybill.refund_approved", refund, refund.proposed_by, staff, "")
                await uow.commit()
                in_flight = False
        if in_flight:
            return await self._ask(refund)
        return await self._send(refund)

    # --- the saga's steps --------------------------------------------------------------------------

    async def _send(self, refund: StoredRefund) -> RefundView:
        assert self._reversals is not None
        ocid = refund.originator_conversation_id
        try:
            accepted = await self._reversals.request_reversal(
                originator_conversation_id=ocid,
                trans_id=refund.trans_id,
                amount_minor=refund.amount_minor,
                remarks="PenPay suspense refund",
            )
        except ReversalOutcomeUnknown as unknown:
            await self._mark(refund, RefundStatus.UNKNOWN, result_desc=str(unknown)[:255])
            raise_alert(
                REFUND_ALERT,
                "a suspense refund's Reversal got no answer: it is resolved by Transaction Status",
                trans_id=refund.trans_id,
                originator_conversation_id=ocid,
            )
            return _view(_with(refund, status=RefundStatus.UNKNOWN), "no answer; approve again to ask M-Pesa")
        except ReversalRefused as refused:
            await self._mark(
                refund,
                RefundStatus.FAILED,
                result_code=refused.code[:32],
                result_desc=refused.message[:255],
                audit="review.paybill.refund_failed",
            )
            return _view(_with(refund, status=RefundStatus.FAILED), f"refused: {refused}")
        await self._mark(
            refund,
            RefundStatus.ACCEPTED,
            answered_ocid=accepted.originator_conversation_id[:64],
            conversation_id=accepted.conversation_id[:64],
            only_from=RefundStatus.SENDING,
        )
        return _view(_with(refund, status=RefundStatus.ACCEPTED), "accepted; M-Pesa's result is awaited")

    async def _ask(self, refund: StoredRefund) -> RefundView:
        assert self._reversals is not None
        await self._reversals.ask_reversal_status(
            originator_conversation_id=refund.originator_conversation_id
        )
        return _view(refund, "asked M-Pesa (Transaction Status); nothing was sent again")

    async def _mark(
        self,
        refund: StoredRefund,
        status: RefundStatus,
        *,
        audit: str | None = None,
        only_from: RefundStatus | None = None,
        **values: object,
    ) -> None:
        async with self._uow() as uow:
            await uow.paybill.lock(refund.trans_id)
            now_row = await uow.paybill.refund_by_ocid(refund.originator_conversation_id)
            # A result that arrived before the sync answer was recorded has settled it already.
            if now_row is None or now_row.status not in IN_FLIGHT:
                return
            if only_from is not None and now_row.status is not only_from:
                status = now_row.status
            await uow.paybill.update_refund(
                refund.originator_conversation_id, now=uow.clock.now(), status=status, **values
            )
            if audit:
                _audit(uow, audit, refund, refund.proposed_by, refund.approved_by, str(values))
            await uow.commit()

    async def record(self, result: ReversalResult) -> str:
        """M-Pesa's word about a reversal (its Result, or Transaction Status about it). Used only
        when it names our request; returns what it did (for the endpoint's log)."""
        async with self._uow() as uow:
            now = uow.clock.now()
            ocid = result.originator_conversation_id
            refund = await uow.paybill.refund_by_ocid(ocid) if ocid else None
            if refund is not None and ocid:
                await uow.paybill.lock(refund.trans_id)  # the payment's lock, as every writer takes it
                refund = await uow.paybill.refund_by_ocid(ocid)
            if refund is None:
                # e.g. Transaction Status finding no such request (it names none), or a stranger's
                await _keep(uow, result, "UNKNOWN_ID", "a reversal result for no refund of ours", now)
                await uow.commit()
                raise_alert(
                    REFUND_ALERT,
                    "a reversal answer names no refund of ours: kept for a person",
                    result_code=result.result_code,
                )
                return "unknown"
            foreign = _foreign(refund, result)
            if foreign:
                await _keep(uow, result, "FOREIGN_ANSWER", foreign, now)
                await uow.commit()
                raise_alert(
                    ANSWER_ALERT, foreign, originator_conversation_id=refund.originator_conversation_id
                )
                return "foreign"
            if refund.status in (RefundStatus.REFUNDED, RefundStatus.FAILED):
                if result.final and result.succeeded != (refund.status is RefundStatus.REFUNDED):
                    why = f"M-Pesa now says {result.result_code}; the refund stands {refund.status.value}"
                    await _keep(uow, result, "CONFLICTING_RESULT", why, now)
                    await uow.commit()
                    raise_alert(REFUND_ALERT, why, trans_id=refund.trans_id)
                    return "conflict"
                return "duplicate"
            if refund.status not in IN_FLIGHT:  # PROPOSED / REJECTED: nothing was ever sent
                await _keep(uow, result, "UNKNOWN_ID", "a reversal result for a refund never sent", now)
                await uow.commit()
                return "unknown"
            if not result.final:
                return "pending"
            if result.succeeded:
                await self._refunded(uow, refund, result, now)
                outcome = "refunded"
            else:
                await uow.paybill.update_refund(
                    refund.originator_conversation_id,
                    now=now,
                    status=RefundStatus.FAILED,
                    result_code=result.result_code[:32],
                    result_desc=result.result_desc[:255],
                    raw_result=result.raw,
                )
                _audit(
                    uow,
                    "review.paybill.refund_failed",
                    refund,
                    refund.proposed_by,
                    refund.approved_by,
                    f"{result.result_code} {result.result_desc}"[:200],
                )
                outcome = "failed"
            await uow.commit()
        if outcome == "failed":
            raise_alert(
                REFUND_ALERT,
                "M-Pesa refused a suspense refund: the payment stays in suspense",
                trans_id=refund.trans_id,
                result_code=result.result_code,
            )
        log.info("paybill.refund_result", trans_id=refund.trans_id, outcome=outcome, via=result.via)
        return outcome

    async def _refunded(
        self, uow: RefundUnitOfWork, refund: StoredRefund, result: ReversalResult, now: datetime
    ) -> None:
        amount = Money(refund.amount_minor, Currency.KES)
        posting = await bookings.paybill_suspense_refunded(uow.ledger, amount, refund.trans_id)
        await book(uow, posting)
        await uow.paybill.update_refund(
            refund.originator_conversation_id,
            now=now,
            status=RefundStatus.REFUNDED,
            reversal_receipt=(result.receipt or None),
            result_code=result.result_code[:32],
            result_desc=result.result_desc[:255],
            raw_result=result.raw,
            posting_id=posting.id.value,
        )
        await uow.paybill.update(
            refund.trans_id, now=now, status=Status.REFUNDED, resolved_by=refund.approved_by
        )
        await uow.paybill.close_reviews(refund.trans_id, by=refund.approved_by or "m-pesa", now=now)
        _audit(
            uow,
            "review.paybill.refund_confirmed",
            refund,
            refund.proposed_by,
            refund.approved_by,
            f"receipt {result.receipt or '-'} via {result.via}",
        )


def _foreign(refund: StoredRefund, result: ReversalResult) -> str:
    """Why this answer is not about our request, or ""."""
    ours = {refund.originator_conversation_id, refund.answered_ocid} - {None}
    if result.originator_conversation_id not in ours:
        return "the answer names another OriginatorConversationID"
    if refund.conversation_id and result.conversation_id and result.conversation_id != refund.conversation_id:
        return f"the answer names ConversationID {result.conversation_id}, not ours {refund.conversation_id}"
    if result.original_trans_id and result.original_trans_id.strip().upper() != refund.trans_id:
        return f"the answer reverses {result.original_trans_id}, not {refund.trans_id}"
    if result.amount is not None and result.amount * 100 != refund.amount_minor:
        return f"the answer's amount {result.amount} is not the payment's"
    return ""


async def _suspended(uow: RefundUnitOfWork, trans_id: str) -> StoredPayment:
    stored = await uow.paybill.lock(trans_id.strip().upper())
    if stored is None:
        raise ReviewActionNotFound("no paybill payment with this TransID", field="trans_id")
    if stored.status is not Status.SUSPENSE:
        raise ActionNotPossible(f"the payment is {stored.status.value}, not in suspense")
    return stored


async def _keep(uow: RefundUnitOfWork, result: ReversalResult, reason: str, why: str, now: datetime) -> None:
    from application.payments.paybill import PaybillPayment

    await uow.paybill.keep_for_review(
        PaybillPayment(
            trans_id=(result.original_trans_id or result.originator_conversation_id or "?")[:32],
            shortcode="",
            bill_ref="",
            amount_minor=None,
            msisdn=None,
            raw=result.raw,
        ),
        reason,
        why,
        now=now,
    )
    log.warning("paybill.refund_answer_kept", reason=reason, why=why)


def _with(refund: StoredRefund, **values: object) -> StoredRefund:
    from dataclasses import replace

    return replace(refund, **values)  # type: ignore[arg-type]


def _view(refund: StoredRefund, detail: str = "") -> RefundView:
    return RefundView(
        trans_id=refund.trans_id,
        status=refund.status,
        originator_conversation_id=refund.originator_conversation_id,
        proposed_by=refund.proposed_by,
        approved_by=refund.approved_by,
        detail=detail,
    )


def _audit(
    uow: RefundUnitOfWork,
    action: str,
    refund: StoredRefund,
    proposed_by: str | None,
    approved_by: str | None,
    note: str,
) -> None:
    uow.audit(
        action=action,
        subject_type=SUBJECT,
        subject_id=refund.trans_id,
        details={
            "proposed_by": proposed_by,
            "approved_by": approved_by,
            "originator_conversation_id": refund.originator_conversation_id,
            "amount_cents": refund.amount_minor,
            "note": note[:255],
        },
    )


def _reason(text: str) -> str:
    reason = (text or "").strip()
    if not reason or len(reason) > 255:
        raise InvalidValue("say why, in 1 to 255 characters", field="reason")
    return reason
