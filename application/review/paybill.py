"""Paybill payments held in suspense: listed for staff, given to their owner by two people.

Money that arrived at the paybill for no deposit (unknown reference, validation skipped, values
that disagree with the validation) waits in SUSPENSE (application.payments.paybill). An operator
proposes whom it belongs to (the user's deposit reference, e.g. read from the customer's complaint);
an approver, never the proposer, carries it out: in one database transaction the suspense posting
is mirrored and the payment becomes that user's DEPOSIT, which the deposit saga books and transfers
to Deriv as any other. Every proposal, approval, rejection and refused attempt is an audit record
naming both people. Refunding a suspense payment to its payer (Daraja's Reversal API, four eyes too)
is application.review.paybill_refund; while a refund is open the payment cannot be assigned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from application.ledger import book
from application.payments import bookings
from application.payments.paybill import (
    PaybillDeposits,
    PaybillPayment,
    Status,
    StoredPayment,
)
from application.review.errors import (
    ActionNotPossible,
    FourEyesRequired,
    ProposalAlreadyOpen,
    ProposalNotOpen,
    ReviewActionNotFound,
)
from application.review.paybill_refund import RefundUnitOfWork
from domain.payments.paybill import normalise_reference
from domain.shared.errors import InvalidValue
from domain.shared.ids import TransactionId, UserId
from domain.wallet.money import Currency, Money

SUBJECT = "PaybillPayment"
MAX_LIST = 200


@dataclass(frozen=True, slots=True)
class SuspenseItem:
    trans_id: str
    amount: Money
    bill_ref: str
    msisdn_shown: str | None
    reason: str
    proposed_user_id: UserId | None
    proposed_by: str | None
    refund_status: str = ""
    refund_proposed_by: str = ""


class PaybillSuspenseReview:
    def __init__(self, *, unit_of_work: Callable[[], RefundUnitOfWork], deposits: PaybillDeposits) -> None:
        self._uow = unit_of_work
        self._deposits = deposits

    async def list(self, *, limit: int = 50) -> list[SuspenseItem]:
        async with self._uow() as uow:
            rows = await uow.paybill.in_suspense(limit=min(max(limit, 1), MAX_LIST))
            refunds = {r.trans_id: await uow.paybill.open_refund(r.trans_id) for r in rows}
        return [
            SuspenseItem(
                trans_id=r.trans_id,
                amount=Money(r.amount_minor, Currency.KES),
                bill_ref=r.bill_ref,
                msisdn_shown=r.msisdn_shown,
                reason=r.reason or "",
                proposed_user_id=r.proposed_user_id,
                proposed_by=r.proposed_by,
                refund_status=(refund.status.value if (refund := refunds[r.trans_id]) else ""),
                refund_proposed_by=refund.proposed_by if refund else "",
            )
            for r in rows
        ]

    async def propose_assignment(self, *, staff: str, trans_id: str, reference: str, reason: str) -> UserId:
        """Propose that the suspense payment is the deposit of the user whose reference this is."""
        why = _reason(reason)
        wanted = normalise_reference(reference)
        if wanted is None:
            raise InvalidValue("not a deposit reference (PP and eight characters)", field="reference")
        async with self._uow() as uow:
            stored = await self._suspended(uow, trans_id)
            if stored.proposed_by is not None:
                raise ProposalAlreadyOpen(f"{stored.proposed_by} proposed an assignment already")
            user_id = await uow.paybill.user_of(wanted)
            if user_id is None:
                raise InvalidValue("no user has this deposit reference", field="reference")
            now = uow.clock.now()
            problem = await self._deposits.deposit_problem(uow, _payment(stored), user_id, now)
            if problem:
                raise ActionNotPossible(f"it cannot be this user's deposit: {problem}")
            await uow.paybill.update(trans_id, now=now, proposed_user_id=user_id, proposed_by=staff)
            self._audit(uow, "review.paybill.assign_proposed", trans_id, staff, None, user_id, why)
            await uow.commit()
        return user_id

    async def approve_assignment(self, *, staff: str, trans_id: str) -> TransactionId:
        """Carry out the open proposal: release the suspense and make the deposit. Four eyes."""
        async with self._uow() as uow:
            stored = await self._suspended(uow, trans_id)
            if stored.proposed_by is None or stored.proposed_user_id is None:
                raise ProposalNotOpen("no assignment is proposed for this payment")
            if stored.proposed_by == staff:
                self._audit(
                    uow, "review.paybill.four_eyes_refused", trans_id, stored.proposed_by, staff, None, ""
                )
                await uow.commit()  # the refused attempt is on record too
                raise FourEyesRequired("the proposer cannot approve their own proposal")
            now = uow.clock.now()
            payment = _payment(stored)
            problem = await self._deposits.deposit_problem(uow, payment, stored.proposed_user_id, now)
            if problem:
                raise ActionNotPossible(f"it cannot be this user's deposit now: {problem}")
            amount = Money(stored.amount_minor, Currency.KES)
            await book(
                uow,
                await bookings.paybill_suspense_released(
                    uow.ledger, amount, trans_id, str(stored.proposed_user_id)
                ),
            )
            tx = await self._deposits.start_deposit(uow, payment, stored.proposed_user_id, now)
            await uow.paybill.update(
                trans_id,
                now=now,
                status=Status.DEPOSIT,
                user_id=stored.proposed_user_id,
                transaction_id=tx.id,
                resolved_by=staff,
            )
            await uow.paybill.close_reviews(trans_id, by=staff, now=now)
            self._audit(
                uow,
                "review.paybill.assign_approved",
                trans_id,
                stored.proposed_by,
                staff,
                stored.proposed_user_id,
                str(tx.id),
            )
            await uow.commit()
        return tx.id

    async def reject_assignment(self, *, staff: str, trans_id: str, reason: str) -> None:
        why = _reason(reason)
        async with self._uow() as uow:
            stored = await self._suspended(uow, trans_id)
            if stored.proposed_by is None:
                raise ProposalNotOpen("no assignment is proposed for this payment")
            if stored.proposed_by == staff:
                raise FourEyesRequired("the proposer cannot decide their own proposal")
            await uow.paybill.update(trans_id, now=uow.clock.now(), proposed_user_id=None, proposed_by=None)
            self._audit(
                uow,
                "review.paybill.assign_rejected",
                trans_id,
                stored.proposed_by,
                staff,
                stored.proposed_user_id,
                why,
            )
            await uow.commit()

    @staticmethod
    async def _suspended(uow: RefundUnitOfWork, trans_id: str) -> StoredPayment:
        stored = await uow.paybill.lock(trans_id.strip().upper())
        if stored is None:
            raise ReviewActionNotFound("no paybill payment with this TransID", field="trans_id")
        if stored.status is not Status.SUSPENSE:
            raise ActionNotPossible(f"the payment is {stored.status.value}, not in suspense")
        refund = await uow.paybill.open_refund(stored.trans_id)
        if refund is not None:
            raise ActionNotPossible(f"its refund ({refund.status.value}) is open: it cannot be assigned")
        return stored

    @staticmethod
    def _audit(
        uow: RefundUnitOfWork,
        action: str,
        trans_id: str,
        proposed_by: str | None,
        approved_by: str | None,
        user_id: UserId | None,
        note: str,
    ) -> None:
        uow.audit(
            action=action,
            subject_type=SUBJECT,
            subject_id=trans_id,
            details={
                "proposed_by": proposed_by,
                "approved_by": approved_by,
                "user_id": None if user_id is None else str(user_id),
                "note": note,
            },
        )


def _payment(stored: StoredPayment) -> PaybillPayment:
    return PaybillPayment(
        trans_id=stored.trans_id,
        shortcode=stored.shortcode,
        bill_ref=stored.bill_ref,
        amount_minor=stored.amount_minor,
        msisdn=stored.msisdn_shown,
        raw=stored.raw_confirmation or "",
    )


def _reason(text: str) -> str:
    reason = (text or "").strip()
    if not reason or len(reason) > 255:
        raise InvalidValue("say why, in 1 to 255 characters", field="reason")
    return reason
