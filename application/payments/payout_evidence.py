"""B2C answers as evidence: the use cases the Daraja adapter calls once it has parsed and
authenticated a B2C result, a queue timeout or a Transaction Status answer (mpesa_evidence.py is the
same for STK). The adapter never writes an evidence row: the Transaction aggregate judges the answer
(domain/payments/b2c_evidence.py holds the rules) and one unit of work commits the MpesaDisbursement
evidence, the aggregate's version, its typed events (outbox) and their audit records together, or
keeps the answer for a person (`mpesa_callback_reviews`) when it proves nothing.

Each answer is judged under the transaction's row lock, the lock the saga holds while it moves the
payout (transaction row first): a result never lands between the saga's read and its save. The
OriginatorConversationID is looked up in a unit of work of its own, so the locking read is the first
statement of the one that judges: its snapshot then starts after the lock, with whatever the saga
committed. The save is still guarded by the evidence status read, as every save of it is. An id of
the form the saga sends (PENPAY-<transaction id>) needs no lookup: the transaction it names is
locked first, and the payout under the lock must carry that id. An answer proving the payout
(Transaction Status confirming it) completes the withdrawal in the same commit (saga.complete_if_paid);
one that calls for the Transaction Status cross-check arms that query in it (saga.arm_status_query),
so the saga's worker asks it without a commit of its own.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from application.payments.decisions import SagaPolicy
from application.payments.mpesa_evidence import (
    UNKNOWN_ID,
    Arrival,
    EvidenceUnitOfWork,
    KeptAnswer,
    _again_on_conflict,
)
from application.payments.saga import arm_status_query, complete_if_paid
from domain.payments.b2c_evidence import (
    B2CResultEvidence,
    B2CTimeoutEvidence,
    PayoutEffect,
    PayoutJudgement,
    StatusAnswer,
)
from domain.payments.errors import DuplicateReceipt
from domain.payments.stk_evidence import EvidenceProblem
from domain.payments.transaction import Transaction
from domain.shared.ids import TransactionId

# A Transaction Status answer confirming a payout already CONFIRMED changes nothing; it is audited
# under the query's ConversationID, where reconciliation (payout checks) looks for it.
STATUS_QUERY_SUBJECT = "MpesaStatusQuery"
STATUS_CONFIRMED_AGAIN = "mpesa.status_query.confirmed_again"

NO_SUCH_PAYOUT = "no such OriginatorConversationID"

# The OriginatorConversationIDs the saga (and a deposit's refund) send name their transaction:
# PENPAY-<its id in hex>[-R] (saga.originator_conversation_id, review.service).
_OURS = re.compile(r"PENPAY-([0-9a-f]{32})(?:-R)?")


def _named_by(ocid: str) -> TransactionId | None:
    """The transaction an OriginatorConversationID of ours names, read from its form; only a hint:
    the payout found under the lock must carry this very id, or the answer is kept as unknown."""
    matched = _OURS.fullmatch(ocid)
    return None if matched is None else TransactionId(uuid.UUID(matched.group(1)))


Judge = Callable[[Transaction, datetime], PayoutJudgement]


@dataclass(frozen=True, slots=True)
class PayoutResult:
    """What became of one answer. `judgement` None: no payout with its id (kept for review)."""

    judgement: PayoutJudgement | None
    transaction_id: TransactionId | None = None


class PayoutEvidence:
    def __init__(self, uow: Callable[[], EvidenceUnitOfWork], policy: SagaPolicy) -> None:
        """`policy`: the running saga's (settings feed it), which decides whether an answer's
        evidence completes the withdrawal here."""
        self._uow = uow
        self._policy = policy

    async def b2c_result(self, result: B2CResultEvidence, arrival: Arrival) -> PayoutResult:
        def judge(tx: Transaction, now: datetime) -> PayoutJudgement:
            return tx.b2c_result_received(result, now=now)

        return await self._answer(
            result.originator_conversation_id, arrival, judge, "TransactionReceipt already used"
        )

    async def b2c_timeout(self, queue_timeout: B2CTimeoutEvidence, arrival: Arrival) -> PayoutResult:
        def judge(tx: Transaction, now: datetime) -> PayoutJudgement:
            return tx.b2c_timeout_received(queue_timeout, now=now)

        return await self._answer(queue_timeout.originator_conversation_id, arrival, judge, "")

    async def status_answer(
        self, answer: StatusAnswer, arrival: Arrival, *, query_conversation_id: str | None
    ) -> PayoutResult:
        """`query_conversation_id`: the query's own ConversationID (the envelope's), under which a
        confirmation of a payout already confirmed is audited."""

        def judge(tx: Transaction, now: datetime) -> PayoutJudgement:
            return tx.b2c_status_answered(answer, now=now)

        result = await self._answer(
            answer.originator_conversation_id,
            arrival,
            judge,
            "ReceiptNo already used",
            confirmed_again=(query_conversation_id or answer.originator_conversation_id, answer),
            unknown="status result for no known disbursement",
        )
        return result

    async def keep(self, kept: KeptAnswer, *, about_payout: str | None = None) -> TransactionId | None:
        """Keep an answer that settles nothing for a person; `about_payout`: the OriginatorConversationID
        whose transaction it is filed under (when it names none itself). Returns that transaction."""
        async with self._uow() as uow:
            tx_id = kept.transaction_id
            if about_payout is not None and tx_id is None:
                tx = await uow.transactions.find_by_originator_conversation_id(about_payout)
                tx_id = None if tx is None else tx.id
            await uow.callback_reviews.keep(
                KeptAnswer(kept.arrival, kept.reason, kept.detail, kept.correlation_id, tx_id)
            )
            await uow.commit()
        return tx_id

    # --- one answer, one unit of work ---------------------------------------------------------

    async def _answer(
        self,
        ocid: str,
        arrival: Arrival,
        judge: Judge,
        reused: str,
        *,
        confirmed_again: tuple[str, StatusAnswer] | None = None,
        unknown: str = NO_SUCH_PAYOUT,
    ) -> PayoutResult:
        tx_id = _named_by(ocid)
        if tx_id is None:  # not an id of ours by its form: looked up in a unit of work of its own
            async with self._uow() as uow:
                found = await uow.transactions.find_by_originator_conversation_id(ocid)
            if found is None:
                await self.keep(KeptAnswer(arrival, UNKNOWN_ID, unknown, ocid, None))
                return PayoutResult(None)
            tx_id = found.id

        async def attempt() -> PayoutResult | None:
            return await self._judge_locked(tx_id, ocid, arrival, judge, confirmed_again, unknown)

        result = await _again_on_conflict(attempt)
        if result is not None:
            return result
        # The receipt is another payout's (UNIQUE): nothing changed; kept for a person.
        judgement = PayoutJudgement(PayoutEffect.REVIEW, EvidenceProblem.RECEIPT_REUSED, reused)
        await self.keep(KeptAnswer(arrival, judgement.problem or "", reused, ocid, tx_id))
        return PayoutResult(judgement, tx_id)

    async def _judge_locked(
        self,
        tx_id: TransactionId,
        ocid: str,
        arrival: Arrival,
        judge: Judge,
        confirmed_again: tuple[str, StatusAnswer] | None,
        unknown: str,
    ) -> PayoutResult | None:
        """None: the save found the receipt already another payout's (nothing committed)."""
        async with self._uow() as uow:
            locked = await uow.saga_steps.lock(tx_id)  # the saga's locked read: its steps come along
            tx = None if locked is None else locked.transaction
            payout = None if tx is None else tx.mpesa_disbursement
            if tx is None or payout is None or payout.originator_conversation_id != ocid:
                # Re-sent under a new id since the lookup: the old id is no payout of ours any more.
                await uow.callback_reviews.keep(KeptAnswer(arrival, UNKNOWN_ID, unknown, ocid, None))
                await uow.commit()
                return PayoutResult(None)
            version = tx.version
            now = uow.clock.now()
            judgement = judge(tx, now)
            # A payout proven now completes the withdrawal in this same commit (the saga's next step);
            # one to cross-check has its Transaction Status query armed in it
            if not complete_if_paid(tx, now, self._policy) and tx.version != version:
                assert locked is not None
                await arm_status_query(uow.saga_steps, tx, locked.steps, now, self._policy)
            if judgement.problem is not None:
                await uow.callback_reviews.keep(
                    KeptAnswer(arrival, judgement.problem.value, judgement.detail, ocid, tx.id)
                )
            if judgement.effect is PayoutEffect.CONFIRMED_AGAIN and confirmed_again is not None:
                subject, answer = confirmed_again
                uow.audit(
                    action=STATUS_CONFIRMED_AGAIN,
                    subject_type=STATUS_QUERY_SUBJECT,
                    subject_id=subject,
                    details={
                        "originator_conversation_id": ocid,
                        "receipt": answer.receipt,
                        "amount": answer.amount_shown,
                    },
                )
            if tx.version != version:
                try:
                    await uow.transactions.save(tx)
                except DuplicateReceipt:
                    return None
            await uow.commit()
        return PayoutResult(judgement, tx.id)


__all__ = ["STATUS_CONFIRMED_AGAIN", "STATUS_QUERY_SUBJECT", "PayoutEvidence", "PayoutResult"]
