"""M-Pesa answers as evidence: the use cases the Daraja adapter calls once it has parsed and
authenticated an answer. The adapter never writes an evidence row; here the answer is judged by
the Transaction aggregate (domain/payments/stk_evidence.py holds the rules) and the unit of work
commits the evidence, the aggregate's version, its typed events (outbox) and their audit records
together, or keeps the answer for a person (`mpesa_callback_reviews`) when it proves nothing.

Each use case is one short unit of work on a plain read: the save checks the version read, so a
concurrent change (another delivery, the saga) makes it read again, never overwrite. A review row is
written before the aggregate is saved, so every path takes the review table before the transaction
row, as the adoption of parked callbacks does (no lock cycle).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TypeVar

from application.unit_of_work import UnitOfWork
from domain.payments.attachments import EvidenceStatus
from domain.payments.errors import DuplicateReceipt
from domain.payments.ports import TransactionRepository
from domain.payments.stk_evidence import (
    CallbackEffect,
    CallbackJudgement,
    EvidenceProblem,
    QueryEffect,
    StkCallbackEvidence,
    StkQueryAnswer,
)
from domain.payments.transaction import Transaction
from domain.shared.errors import ConcurrentModification
from domain.shared.ids import TransactionId

if TYPE_CHECKING:  # ports imports this module (CallbackReviews)
    from application.payments.ports import SagaSteps

# mpesa_callback_reviews.reason of a callback naming an id we do not hold (yet): an STK callback can
# beat the saga's commit of the push's answer, and is adopted once that commit lands.
UNKNOWN_ID = "UNKNOWN_ID"
FOREIGN_ANSWER = "FOREIGN_ANSWER"  # an answer to our request that is about another id
CONFIRMATION_KIND = "confirmation"
ATTEMPTS = 5  # reads again after a concurrent change; a delivery keeps losing only under a storm


@dataclass(frozen=True, slots=True)
class Arrival:
    """How an answer reached us: its kind (the endpoint), raw body, client address and time."""

    kind: str
    raw: bytes
    remote_addr: str | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class KeptAnswer:
    """An answer kept for a person: it changed no evidence."""

    arrival: Arrival
    reason: str
    detail: str
    correlation_id: str | None
    transaction_id: TransactionId | None


@dataclass(frozen=True, slots=True)
class ParkedCallback:
    review_id: object
    arrival: Arrival


class CallbackReviews(Protocol):
    async def keep(self, answer: KeptAnswer) -> None: ...

    async def any_parked(self, correlation_id: str) -> bool:
        """Whether an answer is parked under this id (a plain read, no lock)."""
        ...

    async def lock_parked(self, kind: str, correlation_id: str) -> Sequence[ParkedCallback]:
        """The answers parked under this id (UNKNOWN_ID, open), oldest first, locked until the end."""
        ...

    async def mark_adopted(
        self, review_id: object, transaction_id: TransactionId, *, now: datetime
    ) -> None: ...


class EvidenceUnitOfWork(UnitOfWork, Protocol):
    @property
    def transactions(self) -> TransactionRepository: ...
    @property
    def saga_steps(self) -> SagaSteps: ...
    @property
    def callback_reviews(self) -> CallbackReviews: ...


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """What became of one callback. `judgement` None: no request with its id (parked for adoption)."""

    judgement: CallbackJudgement | None
    transaction_id: TransactionId | None = None

    @property
    def kept_for_review(self) -> bool:
        return self.judgement is None or self.judgement.effect is CallbackEffect.REVIEW


@dataclass(frozen=True, slots=True)
class QueryResult:
    effect: QueryEffect
    # The evidence status after the answer (what a caller that did not move it reports).
    status: str
    # True for the one caller whose answer moved the evidence to CONFIRMED: only that caller credits.
    newly_confirmed: bool = False


_REUSED = CallbackJudgement(
    CallbackEffect.REVIEW, EvidenceProblem.RECEIPT_REUSED, "MpesaReceiptNumber already used"
)

_T = TypeVar("_T")
ParseParked = Callable[[bytes], StkCallbackEvidence | None]


class MpesaEvidence:
    def __init__(self, uow: Callable[[], EvidenceUnitOfWork]) -> None:
        self._uow = uow

    # --- STK callback -----------------------------------------------------------------------

    async def stk_callback(self, callback: StkCallbackEvidence, arrival: Arrival) -> CallbackResult:
        return await _again_on_conflict(lambda: self._stk_callback(callback, arrival))

    async def _stk_callback(self, callback: StkCallbackEvidence, arrival: Arrival) -> CallbackResult:
        checkout = callback.checkout_request_id
        async with self._uow() as uow:
            # hold_absence: an unknown id keeps its key locked until commit, so the saga's store of
            # the push's answer waits for the parked row, and its adoption then sees it.
            tx = await uow.transactions.find_by_checkout_request_id(checkout, hold_absence=True)
            if tx is None:
                await uow.callback_reviews.keep(
                    KeptAnswer(arrival, UNKNOWN_ID, "no such CheckoutRequestID", checkout, None)
                )
                await uow.commit()
                return CallbackResult(None)
            try:
                judgement = await self._apply(uow, tx, callback, arrival)
            except DuplicateReceipt:
                judgement = None
            else:
                await uow.commit()
                return CallbackResult(judgement, tx.id)
        return await self._receipt_reused(checkout, tx.id, arrival)

    async def _apply(
        self, uow: EvidenceUnitOfWork, tx: Transaction, callback: StkCallbackEvidence, arrival: Arrival
    ) -> CallbackJudgement:
        """Judge one callback on the aggregate; keep it for review or save what it proved."""
        version = tx.version
        judgement = tx.stk_callback_received(callback, now=uow.clock.now())
        if judgement.effect is CallbackEffect.REVIEW:
            await self._keep(uow, judgement, callback.checkout_request_id, tx.id, arrival)
        elif tx.version != version:
            await uow.transactions.save(tx)  # DuplicateReceipt: another request holds the receipt
        return judgement

    async def _receipt_reused(self, checkout: str, tx_id: TransactionId, arrival: Arrival) -> CallbackResult:
        async with self._uow() as uow:
            await self._keep(uow, _REUSED, checkout, tx_id, arrival)
            await uow.commit()
        return CallbackResult(_REUSED, tx_id)

    @staticmethod
    async def _keep(
        uow: EvidenceUnitOfWork,
        judgement: CallbackJudgement,
        correlation_id: str,
        tx_id: TransactionId,
        arrival: Arrival,
    ) -> None:
        reason = judgement.problem.value if judgement.problem else "UNSPECIFIED"
        await uow.callback_reviews.keep(KeptAnswer(arrival, reason, judgement.detail, correlation_id, tx_id))

    async def adopt_early_stk_callbacks(
        self, checkout_request_id: str, parse: ParseParked, *, parked: bool = False
    ) -> tuple[CallbackResult, ...]:
        """Take in the STK callbacks parked as UNKNOWN_ID because they came before the saga stored
        the push's answer. Each is judged as a callback arriving now and its parked row marked
        ADOPTED, in one unit of work; the parked rows are locked, so each is adopted once however
        many workers ask. `parse` is the endpoint's parser (None: not this request's callback).
        `parked`: the caller saw one parked (the saga, in the commit of the push's answer), so no
        look for one first; the locked read of the parked rows decides either way."""
        if not parked:
            async with self._uow() as uow:  # almost always nothing parked: one indexed read
                if not await uow.callback_reviews.any_parked(checkout_request_id):
                    return ()
        return await _again_on_conflict(lambda: self._adopt(checkout_request_id, parse))

    async def _adopt(self, checkout: str, parse: ParseParked) -> tuple[CallbackResult, ...]:
        results: list[CallbackResult] = []
        async with self._uow() as uow:
            parked = await uow.callback_reviews.lock_parked("stk", checkout)
            if not parked:
                return ()
            # Read after the lock: the snapshot then holds whatever an earlier adopter committed.
            tx = await uow.transactions.find_by_checkout_request_id(checkout)
            if tx is None:
                return ()
            version = tx.version
            for row in parked:
                callback = parse(row.arrival.raw)
                if callback is None or callback.checkout_request_id != checkout:
                    continue  # e.g. a longer id, cut to the column's 64 characters: not this request
                judgement = tx.stk_callback_received(callback, now=uow.clock.now())
                if judgement.effect is CallbackEffect.REVIEW:
                    await self._keep(uow, judgement, checkout, tx.id, row.arrival)
                await uow.callback_reviews.mark_adopted(row.review_id, tx.id, now=uow.clock.now())
                results.append(CallbackResult(judgement, tx.id))
            if tx.version != version:
                # A receipt another request holds fails the whole adoption: the rows stay parked and
                # the saga's STK Query settles the deposit (as when adoption is not reached at all).
                await uow.transactions.save(tx)
            await uow.commit()
        return tuple(results)

    # --- answers about another request -------------------------------------------------------

    async def keep_foreign_answer(self, kind: str, raw: bytes, detail: str, correlation_id: str) -> None:
        """A synchronous answer to one of our requests that is about another: kept for a person under
        the id we asked about (a CheckoutRequestID or an OriginatorConversationID), with its
        transaction when that id is ours. Nothing else changes."""
        async with self._uow() as uow:
            tx = await uow.transactions.find_by_checkout_request_id(correlation_id)
            if tx is None:
                tx = await uow.transactions.find_by_originator_conversation_id(correlation_id)
            arrival = Arrival(kind, raw, None, uow.clock.now())
            tx_id = None if tx is None else tx.id
            await uow.callback_reviews.keep(
                KeptAnswer(arrival, FOREIGN_ANSWER, detail, correlation_id, tx_id)
            )
            await uow.commit()

    # --- STK Query --------------------------------------------------------------------------

    async def read_stk(self, checkout_request_id: str) -> Transaction | None:
        """The deposit a CheckoutRequestID belongs to, read before asking M-Pesa about it (no lock:
        hand it to stk_query_answered, whose save checks that nothing changed since)."""
        async with self._uow() as uow:
            return await uow.transactions.find_by_checkout_request_id(checkout_request_id)

    async def stk_query_answered(
        self, checkout_request_id: str, answer: StkQueryAnswer, *, read: Transaction | None = None
    ) -> QueryResult:
        """Record a final STK Query answer. `read`: the deposit as read_stk gave it before the query,
        saved as it was read when nothing changed meanwhile (else read again)."""
        first = [read]

        async def attempt() -> QueryResult:
            earlier, first[0] = first[0], None  # a retry reads afresh
            return await self._stk_query(checkout_request_id, answer, earlier)

        return await _again_on_conflict(attempt)

    async def _stk_query(
        self, checkout: str, answer: StkQueryAnswer, read: Transaction | None
    ) -> QueryResult:
        async with self._uow() as uow:
            if read is not None:
                uow.transactions.resume(read)
                tx: Transaction | None = read
            else:
                tx = await uow.transactions.find_by_checkout_request_id(checkout)
            if tx is None or tx.mpesa_request is None:
                raise LookupError(f"no stored MpesaRequest {checkout}")
            effect = await record_stk_query_answer(uow, tx, answer)
            status = str(tx.mpesa_request.status)
            if effect is QueryEffect.SETTLED:
                return QueryResult(effect, status)
            await uow.transactions.save(tx)
            await uow.commit()
        return QueryResult(effect, status, newly_confirmed=effect is QueryEffect.CONFIRMED)


async def record_stk_query_answer(
    uow: EvidenceUnitOfWork, tx: Transaction, answer: StkQueryAnswer
) -> QueryEffect:
    """A final STK Query answer judged on the deposit (`tx`, read in `uow`); a contradiction of its
    callback kept for a person in the same unit of work. The caller saves `tx` unless SETTLED (then
    nothing changed): here (a unit of work of its own) or the saga, with what the answer decides."""
    request = tx.mpesa_request
    if request is None:
        raise LookupError(f"transaction {tx.id} has no MpesaRequest")
    effect = tx.stk_query_answered(answer, now=uow.clock.now())
    if effect is QueryEffect.CONTRADICTED:
        arrival = Arrival(CONFIRMATION_KIND, answer.evidence.encode(), None, uow.clock.now())
        why = tx.mpesa_request.result_desc if tx.mpesa_request is not None else None
        kept = KeptAnswer(
            arrival,
            EvidenceProblem.CONFIRMATION_MISMATCH.value,
            why or "",
            request.checkout_request_id,
            tx.id,
        )
        await uow.callback_reviews.keep(kept)
    return effect


async def _again_on_conflict(attempt: Callable[[], Awaitable[_T]]) -> _T:
    """Run a unit of work again when the transaction changed under it (its save's version check)."""
    for _ in range(ATTEMPTS - 1):
        try:
            return await attempt()
        except ConcurrentModification:
            continue
    return await attempt()


__all__ = [
    "Arrival",
    "CallbackResult",
    "CallbackReviews",
    "EvidenceStatus",
    "EvidenceUnitOfWork",
    "KeptAnswer",
    "MpesaEvidence",
    "ParkedCallback",
    "QueryResult",
    "record_stk_query_answer",
]
