"""SQL adapter of `CallbackInbox` (and of the confirmer's store), SQLAlchemy Core on the existing tables.

Every answer about a request of ours (STK callbacks, STK Query answers, early callbacks adopted, B2C
results, queue timeouts, Transaction Status answers) is parsed here and handed to the application
(application.payments.mpesa_evidence for STK, application.payments.payout_evidence for B2C): the
Transaction aggregate judges it by the rules in domain/payments/stk_evidence.py and b2c_evidence.py,
and the unit of work commits the evidence, the aggregate's version, its typed events (outbox:
MpesaCallbackReceived, MpesaDisbursementOutcomeUnknown, MpesaDisbursementCompleted,
MpesaDisbursementFailed) and their audit records together. This module writes no `mpesa_requests`
or `mpesa_disbursements` row and no event; it maps what the application decided to the endpoint's
Outcome, logs and alerts. The unit of work (with its clock) is the composition root's.

Which payout a Transaction Status answer is about (the OriginatorConversationID it names, or the
Occasion we sent) is found here; answers about no request of ours, Account Balance results and
rejected deliveries are kept (`mpesa_callback_reviews`) or audited here. The raw body is kept: in
the evidence row when it settled the request, in `mpesa_callback_reviews` when it was unknown,
mismatching, conflicting or rejected.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from application.alerts import raise_alert
from application.payments import payout_evidence
from application.payments.decisions import SagaPolicy
from application.payments.mpesa_evidence import (
    Arrival,
    CallbackResult,
    EvidenceUnitOfWork,
    KeptAnswer,
    MpesaEvidence,
    QueryResult,
)
from application.payments.payout_evidence import PayoutEvidence, PayoutResult
from domain.payments import b2c_evidence
from domain.payments.b2c_evidence import B2CResultEvidence, B2CTimeoutEvidence, PayoutEffect, StatusAnswer
from domain.payments.stk_evidence import CallbackEffect, StkCallbackEvidence, StkQueryAnswer
from domain.payments.transaction import Transaction
from domain.shared.errors import DomainError
from domain.shared.ids import TransactionId
from domain.shared.json_value import JSONValue
from domain.wallet.money import Currency, Money
from mpesa_adapter.alerting import FOREIGN_ANSWER_ALERT
from mpesa_adapter.callback_parsing import (
    B2CQueueTimeout,
    B2CResult,
    MalformedCallback,
    ResultEnvelope,
    StkCallback,
    TransactionStatusResult,
    cents,
    parse_stk_callback,
    strict_json,
)
from mpesa_adapter.inbox import Delivery, Outcome, Rejection, ReviewReason
from mpesa_adapter.review_table import mpesa_callback_reviews
from mpesa_adapter.routes import CallbackKind
from mpesa_adapter.types import RequestAccepted
from persistence.audit import AuditRecord, write_pending
from persistence.audit_sealer import sealer_for
from persistence.callback_reviews import review_row
from persistence.tables import audit_logs, audit_pending, mpesa_disbursements

log = logging.getLogger("penpay.mpesa.callbacks")

SENT = "SENT"
SUCCEEDED = "SUCCEEDED"
CONFIRMED = "CONFIRMED"
FAILED = "FAILED"
UNKNOWN = "UNKNOWN"
REVIEW = "REVIEW"

_RECORDED = (Outcome.SUCCESS_RECORDED, Outcome.FAILURE_RECORDED)


# Review reasons that mean "Daraja answered about another request than the one we hold": an operator
# hears about them at once (alert). An STK callback for an unknown CheckoutRequestID is not one of them:
# a fast payer's callback routinely beats the saga's commit of the push's answer and is adopted later.
# A second, different result for a settled request, or a receipt another request holds, is as much an
# answer about another payment as a wrong id.
_FOREIGN_REASONS = frozenset(
    {
        ReviewReason.FOREIGN_ANSWER,
        ReviewReason.CONVERSATION_ID_MISMATCH,
        ReviewReason.MERCHANT_ID_MISMATCH,
        ReviewReason.CONFLICTING_RESULT,
        ReviewReason.RECEIPT_REUSED,
    }
)
# The saga stores this instead of a ConversationID when Daraja refused a re-sent B2C as a duplicate
# (application.payments.saga): it is no id of Daraja's, so nothing is compared with it.
NO_CONVERSATION_ID = b2c_evidence.NO_CONVERSATION_ID


# Account Balance queries we sent live in the audit trail (a step PenPay took, with the ids Daraja gave
# it), subject MpesaBalanceQuery / ConversationID: a balance result is believed only when it answers one.
BALANCE_QUERY_SUBJECT = "MpesaBalanceQuery"
# Transaction Status answers that confirm a payout already CONFIRMED, by the query's ConversationID
# (audited by the application; named here for the payout checks that read them)
STATUS_QUERY_SUBJECT = payout_evidence.STATUS_QUERY_SUBJECT
STATUS_CONFIRMED_AGAIN = payout_evidence.STATUS_CONFIRMED_AGAIN
BALANCE_QUERY_SENT = "mpesa.balance_query.sent"
BALANCE_QUERY_ANSWERED = "mpesa.balance_query.answered"
ADAPTER_ACTOR = "penpay:mpesa-adapter"


def _digits(phone: str | None) -> str:
    return "".join(c for c in (phone or "") if c.isdigit())


INT32 = range(-(2**31), 2**31)  # result_code is an INTEGER column


def code_int(code: str | None) -> int | None:
    if code is None:
        return None
    try:
        value = int(code)
    except ValueError:
        return None  # non-numeric codes (SFC_IC0003) live in result_desc
    return value if value in INT32 else None  # so do codes no INTEGER column holds


def _desc(code: str, desc: str) -> str:
    text = desc if code_int(code) is not None else f"[{code}] {desc}"
    return text[:255]


def _status_failure(cb: TransactionStatusResult) -> str:
    return _desc(str(cb.envelope.result_code), cb.envelope.result_desc or "Transaction Status failed")


def _raw_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


@dataclass(frozen=True)
class StoredRequest:
    transaction_id: uuid.UUID
    checkout_request_id: str
    merchant_request_id: str
    phone: str
    amount_cents: int
    amount_currency: str
    status: str
    result_code: int | None
    mpesa_receipt_number: str | None
    # The deposit as read (a Transaction), handed back with the query's answer: no second read.
    read: object = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class StoredDisbursement:
    transaction_id: uuid.UUID
    originator_conversation_id: str
    conversation_id: str | None
    phone: str
    amount_cents: int
    amount_currency: str
    status: str
    result_code: int | None
    transaction_receipt: str | None


class SqlCallbackInbox:
    def __init__(
        self,
        engine: AsyncEngine,
        unit_of_work: Callable[[], EvidenceUnitOfWork],
        *,
        saga_policy: SagaPolicy,
    ) -> None:
        """`unit_of_work`: the composition root's (its clock, actor ADAPTER_ACTOR). The evidence is
        the application's to write: the aggregate, in a unit of work. Its audit records (the typed
        events) are committed with the evidence and chained by the next seal of any process:
        the background sealer's, or (inline) the saga's that the answer wakes. `saga_policy`: the
        running saga's, by which an answer proving a payout completes the withdrawal."""
        self._engine = engine  # reads, and the answers no request of ours is named in
        self._evidence = MpesaEvidence(unit_of_work)
        self._payouts = PayoutEvidence(unit_of_work, saga_policy)

    # --- STK ------------------------------------------------------------------------------

    async def record_stk_callback(self, cb: StkCallback, delivery: Delivery) -> Outcome:
        """Parsed and authenticated here; judged and recorded by the application (MpesaEvidence):
        the Transaction aggregate changes the evidence, in one unit of work."""
        kind = CallbackKind.STK
        arrival = Arrival(kind.value, cb.raw, delivery.remote_addr, delivery.received_at)
        result = await self._evidence.stk_callback(stk_evidence(cb), arrival)
        outcome = self._stk_outcome(kind, cb.checkout_request_id, result)
        if outcome in _RECORDED:
            log.info(
                "stk callback checkout_request_id=%s result_code=%s -> %s",
                cb.checkout_request_id,
                cb.result_code,
                outcome,
            )
        return outcome

    async def adopt_early_stk_callbacks(
        self, checkout_request_id: str, *, parked: bool = False
    ) -> tuple[Outcome, ...]:
        """Take in the STK callbacks parked as UNKNOWN_ID because they arrived before the saga stored
        the push's answer (a fast payer beats the commit); see MpesaEvidence.adopt_early_stk_callbacks.
        Returns the outcomes, empty when nothing was parked.

        The bodies are re-parsed with the endpoint's parser: each was authenticated (path secret,
        allow-list) before it was parked, so it deserves what a callback arriving now would get.
        `parked`: the caller saw one parked, so no look for one first."""
        results = await self._evidence.adopt_early_stk_callbacks(
            checkout_request_id, _parse_parked, parked=parked
        )
        outcomes = tuple(self._stk_outcome(CallbackKind.STK, checkout_request_id, r) for r in results)
        for outcome in outcomes:
            log.info("early stk callback adopted checkout_request_id=%s -> %s", checkout_request_id, outcome)
        return outcomes

    @staticmethod
    def _stk_outcome(kind: CallbackKind, correlation_id: str, result: CallbackResult) -> Outcome:
        judgement = result.judgement
        if judgement is None:
            _log_review(kind, ReviewReason.UNKNOWN_ID, correlation_id, None)
            return Outcome.UNKNOWN
        if judgement.effect is not CallbackEffect.REVIEW:
            return _STK_OUTCOMES[judgement.effect]
        problem = judgement.problem
        reason = ReviewReason(problem.value) if problem else ReviewReason.CONFLICTING_RESULT
        _log_review(kind, reason, correlation_id, None)
        _alert_if_foreign(kind, reason, judgement.detail, correlation_id, result.transaction_id)
        return Outcome.CONFLICT if judgement.conflict else Outcome.MISMATCH

    # --- B2C ------------------------------------------------------------------------------

    async def record_b2c_result(self, cb: B2CResult, delivery: Delivery) -> Outcome:
        """Parsed and authenticated here; judged and recorded by the application (PayoutEvidence):
        the Transaction aggregate changes the MpesaDisbursement evidence, in one unit of work."""
        kind = CallbackKind.B2C_RESULT
        ocid = cb.originator_conversation_id
        result = await self._payouts.b2c_result(b2c_result_evidence(cb), _arrival(kind, cb.raw, delivery))
        outcome = _payout_outcome(kind, ocid, result, delivery)
        if outcome in _RECORDED:
            log.info(
                "b2c result originator_conversation_id=%s result_code=%s -> %s",
                ocid,
                cb.envelope.result_code,
                outcome,
            )
        return outcome

    async def record_b2c_timeout(self, cb: B2CQueueTimeout, delivery: Delivery) -> Outcome:
        """Not a failure: the payout may or may not have happened. SENT -> UNKNOWN, for Transaction Status."""
        kind = CallbackKind.B2C_TIMEOUT
        ocid = cb.originator_conversation_id
        timeout = B2CTimeoutEvidence(
            originator_conversation_id=ocid,
            conversation_id=cb.conversation_id,
            result_code=code_int(cb.envelope.result_code),
            result_desc=_desc(cb.envelope.result_code, cb.envelope.result_desc),
            raw=_raw_text(cb.raw),
        )
        result = await self._payouts.b2c_timeout(timeout, _arrival(kind, cb.raw, delivery))
        outcome = _payout_outcome(kind, ocid, result, delivery)
        if outcome is Outcome.TIMEOUT_RECORDED:
            log.info("b2c queue timeout originator_conversation_id=%s -> outcome unknown", ocid)
        return outcome

    async def record_status_result(self, cb: TransactionStatusResult, delivery: Delivery) -> Outcome:
        """A Transaction Status answer about one of our B2C payouts: "Completed" settles it as CONFIRMED
        (exactly one payout: the disbursement row holds the receipt, UNIQUE); a final failure of a payout
        still SENT/UNKNOWN settles it as FAILED; anything else is kept as evidence only. Which payout it
        is about is found here; what it proves is the aggregate's to judge (PayoutEvidence)."""
        kind = CallbackKind.STATUS_RESULT
        arrival = _arrival(kind, cb.raw, delivery)
        ocid = cb.subject_originator_conversation_id
        if ocid is None and not cb.envelope.succeeded:
            # e.g. "could not be found" (ResultCode 25) or a credential failure: such a result names
            # only the query's own ConversationID; the worker's next confirm_b2c asks again. It is
            # kept under that id: a review approval that asked about a receipt reads it there.
            log.warning(
                "status result without a subject: result_code=%s conversation_id=%s",
                cb.envelope.result_code,
                cb.envelope.conversation_id,
            )
            reason = ReviewReason.STATUS_FAILED
            conversation_id = cb.envelope.conversation_id
            await self._payouts.keep(KeptAnswer(arrival, reason, _status_failure(cb), conversation_id, None))
            _log_review(kind, reason, conversation_id, delivery.remote_addr)
            return Outcome.STATUS_RECORDED
        if cb.names_another_than_asked():
            # The Occasion is ours (the id we asked about); the parameters are about another payment.
            reason = ReviewReason.FOREIGN_ANSWER
            detail = f"asked about {cb.occasion}, answered about {cb.named_originator_conversation_id}"
            kept = KeptAnswer(arrival, reason, detail, cb.occasion, None)
            tx_id = await self._payouts.keep(kept, about_payout=cb.occasion)
            _log_review(kind, reason, cb.occasion, delivery.remote_addr)
            _alert_if_foreign(kind, reason, detail, cb.occasion, tx_id)
            return Outcome.MISMATCH
        if ocid is None:
            reason = ReviewReason.UNKNOWN_ID
            detail = "status result for no known disbursement"
            await self._payouts.keep(KeptAnswer(arrival, reason, detail, None, None))
            _log_review(kind, reason, None, delivery.remote_addr)
            _alert_if_foreign(kind, reason, detail, None, None)
            return Outcome.UNKNOWN
        result = await self._payouts.status_answer(
            status_answer(cb, ocid), arrival, query_conversation_id=cb.envelope.conversation_id
        )
        outcome = _payout_outcome(kind, ocid, result, delivery, "status result for no known disbursement")
        if outcome is Outcome.CONFIRMED:
            log.info("status result originator_conversation_id=%s: payout confirmed", ocid)
        elif outcome is Outcome.STATUS_RECORDED and result.judgement and result.judgement.problem is None:
            log.info(
                "status result originator_conversation_id=%s result_code=%s status=%s: nothing settled",
                ocid,
                cb.envelope.result_code,
                cb.transaction_status,
            )
        return outcome

    # --- Account Balance --------------------------------------------------------------------

    async def record_balance_query(
        self, accepted: RequestAccepted, *, now: datetime, shortcode: str | None = None
    ) -> None:
        """The query just accepted: its ids (and the shortcode asked about, each shortcode holding its
        own part of the float) go to the audit trail, for `record_balance_result`."""
        details: dict[str, JSONValue] = {"originator_conversation_id": accepted.originator_conversation_id}
        if shortcode is not None:
            details["shortcode"] = shortcode
        record = AuditRecord(
            occurred_at=now,
            actor=ADAPTER_ACTOR,
            action=BALANCE_QUERY_SENT,
            subject_type=BALANCE_QUERY_SUBJECT,
            subject_id=accepted.conversation_id,
            details=details,
        )
        async with self._engine.begin() as conn:
            await write_pending(conn, [record])
        await sealer_for(self._engine).after_commit()

    async def record_balance_result(self, env: ResultEnvelope, delivery: Delivery) -> Outcome:
        """An Account Balance result is taken (audited with the balance it gives) only when it answers
        a query we sent: its ConversationID and OriginatorConversationID both those of the query's
        answer. Anything else is kept for review, with an alert."""
        kind = CallbackKind.BALANCE_RESULT
        async with self._engine.begin() as conn:
            sent = await self._balance_query(conn, env.conversation_id)
            asked, shortcode = sent if sent is not None else (None, None)
            if asked is None or asked != env.originator_conversation_id:
                return await self._review(
                    conn,
                    kind,
                    ReviewReason.UNKNOWN_ID if asked is None else ReviewReason.CONVERSATION_ID_MISMATCH,
                    "balance result for no Account Balance query of ours",
                    env.conversation_id,
                    None,
                    env.raw,
                    delivery,
                    Outcome.UNKNOWN,
                )
            balance = env.param("AccountBalance")
            await write_pending(
                conn,
                [
                    AuditRecord(
                        occurred_at=delivery.received_at,
                        actor=ADAPTER_ACTOR,
                        action=BALANCE_QUERY_ANSWERED,
                        subject_type=BALANCE_QUERY_SUBJECT,
                        subject_id=str(env.conversation_id),
                        details={
                            "result_code": env.result_code,
                            "account_balance": None if balance is None else str(balance),
                            "shortcode": shortcode,
                        },
                    )
                ],
            )
        await sealer_for(self._engine).after_commit()
        log.info("balance result conversation_id=%s result_code=%s", env.conversation_id, env.result_code)
        return Outcome.STATUS_RECORDED

    @staticmethod
    async def _balance_query(
        conn: AsyncConnection, conversation_id: str | None
    ) -> tuple[str | None, str | None] | None:
        """The OriginatorConversationID our query with this ConversationID was given and the shortcode
        it asked about, if we sent one (sealed into audit_logs, or still in audit_pending)."""
        if not conversation_id:
            return None
        sent = [
            select(t.c.details)
            .where(t.c.subject_type == BALANCE_QUERY_SUBJECT)
            .where(t.c.subject_id == conversation_id)
            .where(t.c.action == BALANCE_QUERY_SENT)
            for t in (audit_logs, audit_pending)
        ]
        row = (await conn.execute(sent[0].union_all(sent[1]))).first()
        if row is None:
            return None
        details = json.loads(row.details)
        ocid, shortcode = details.get("originator_conversation_id"), details.get("shortcode")
        return (str(ocid) if ocid else None, str(shortcode) if shortcode else None)

    async def record_rejected(self, rejection: Rejection) -> Outcome:
        async with self._engine.begin() as conn:
            return await self._review(
                conn,
                rejection.kind,
                rejection.reason,
                rejection.detail,
                None,
                None,
                rejection.raw,
                rejection.delivery,
                Outcome.REJECTED,
            )

    # --- used by CallbackConfirmer -------------------------------------------------------

    async def stk_request(
        self, checkout_request_id: str, *, read: Transaction | None = None
    ) -> StoredRequest | None:
        """`read`: the deposit as the caller just read it (the saga's locked read for its STK Query
        step), taken instead of a read of our own when it holds this request. Not fresher than one:
        the answer's save checks its version (and reads again if anything moved it)."""
        held = None if read is None else read.mpesa_request
        if read is not None and held is not None and held.checkout_request_id == checkout_request_id:
            tx: Transaction | None = read
        else:
            tx = await self._evidence.read_stk(checkout_request_id)
        request = None if tx is None else tx.mpesa_request
        if tx is None or request is None:
            return None
        return StoredRequest(
            tx.id.value,
            request.checkout_request_id,
            request.merchant_request_id,
            request.phone.value,
            request.amount.amount_minor,
            request.amount.currency.value,
            str(request.status),
            request.result_code,
            request.mpesa_receipt_number,
            read=tx,
        )

    async def disbursement(
        self, originator_conversation_id: str, *, read: Transaction | None = None
    ) -> StoredDisbursement | None:
        """`read`: the withdrawal as the caller just read it (the saga's locked read for its
        Transaction Status step), taken instead of a read of our own when it holds this payout."""
        held = None if read is None else read.mpesa_disbursement
        if held is not None and held.originator_conversation_id == originator_conversation_id:
            return StoredDisbursement(
                held.transaction_id.value,
                held.originator_conversation_id,
                held.conversation_id,
                held.phone.value,
                held.amount.amount_minor,
                held.amount.currency.value,
                str(held.status),
                held.result_code,
                held.transaction_receipt,
            )
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(mpesa_disbursements).where(
                        mpesa_disbursements.c.originator_conversation_id == originator_conversation_id
                    )
                )
            ).first()
        if row is None:
            return None
        return StoredDisbursement(
            row.transaction_id,
            row.originator_conversation_id,
            row.conversation_id,
            row.phone,
            row.amount_cents,
            row.amount_currency,
            row.status,
            row.result_code,
            row.transaction_receipt,
        )

    async def stk_query_answered(
        self, checkout_request_id: str, answer: StkQueryAnswer, *, read: StoredRequest | None = None
    ) -> QueryResult:
        """A final STK Query answer, recorded by the application on the aggregate (one writer).
        `read`: what stk_request gave before the query (saved as read when nothing changed since)."""
        earlier = read.read if read is not None and isinstance(read.read, Transaction) else None
        return await self._evidence.stk_query_answered(checkout_request_id, answer, read=earlier)

    async def keep_answer_for_review(self, api: str, detail: str, correlation_id: str, raw: bytes) -> None:
        """A synchronous answer to one of our requests that is about another (client.ForeignAnswer): kept
        with the id we asked about (a CheckoutRequestID or an OriginatorConversationID), for a person."""
        await self._evidence.keep_foreign_answer(api, raw, detail, correlation_id)
        # not alerted here: the caller raised it before storing (CallbackConfirmer.keep_foreign_answer)
        _log_review(api, ReviewReason.FOREIGN_ANSWER, correlation_id, None)

    # --- helpers --------------------------------------------------------------------------

    @staticmethod
    async def _review(
        conn: AsyncConnection,
        kind: str,
        reason: ReviewReason,
        detail: str,
        correlation_id: str | None,
        transaction_id: uuid.UUID | None,
        raw: bytes,
        delivery: Delivery,
        outcome: Outcome,
        *,
        alert: bool = True,
    ) -> Outcome:
        arrival = Arrival(str(kind), raw, delivery.remote_addr, delivery.received_at)
        tx_id = None if transaction_id is None else TransactionId(transaction_id)
        kept = KeptAnswer(arrival, reason.value, detail, correlation_id, tx_id)
        await conn.execute(insert(mpesa_callback_reviews).values(review_row(kept)))
        _log_review(kind, reason, correlation_id, delivery.remote_addr)
        if alert:
            _alert_if_foreign(kind, reason, detail, correlation_id, transaction_id)
        return outcome


_STK_OUTCOMES = {
    CallbackEffect.SUCCESS_RECORDED: Outcome.SUCCESS_RECORDED,
    CallbackEffect.FAILURE_RECORDED: Outcome.FAILURE_RECORDED,
    CallbackEffect.DUPLICATE: Outcome.DUPLICATE,
    CallbackEffect.RECEIPT_ADDED: Outcome.DUPLICATE,  # the same payment; the receipt was missing
}


def stk_evidence(cb: StkCallback) -> StkCallbackEvidence:
    """The parsed callback as the domain judges it: codes and amounts in their stored forms."""
    amount_cents = cents(cb.amount)
    try:
        amount = None if amount_cents is None else Money(amount_cents, Currency.KES)
    except DomainError:
        amount = None  # an amount no Money holds is no amount we asked for
    return StkCallbackEvidence(
        checkout_request_id=cb.checkout_request_id,
        merchant_request_id=cb.merchant_request_id,
        result_code=code_int(cb.result_code),
        result_desc=_desc(cb.result_code, cb.result_desc),
        paid=cb.succeeded,
        amount=amount,
        receipt=cb.receipt,
        phone_digits=None if cb.phone_masked or cb.phone is None else _digits(cb.phone),
        raw=_raw_text(cb.raw),
        phone_shown=cb.phone_shown if cb.phone_masked else None,
    )


def _parse_parked(raw: bytes) -> StkCallbackEvidence | None:
    try:
        return stk_evidence(parse_stk_callback(strict_json(raw), raw))
    except MalformedCallback as exc:  # parsed once already; a stricter parser may refuse it now
        log.warning("parked stk callback not adopted: %s", exc)
        return None


def _log_review(kind: str, reason: ReviewReason, correlation_id: str | None, remote_addr: str | None) -> None:
    log.warning(
        "mpesa callback recorded for review: kind=%s reason=%s correlation_id=%s remote=%s",
        kind,
        reason.value,
        correlation_id,
        remote_addr,
    )


def _alert_if_foreign(
    kind: str, reason: ReviewReason, detail: str, correlation_id: str | None, transaction_id: object
) -> None:
    if reason in _FOREIGN_REASONS or (reason is ReviewReason.UNKNOWN_ID and kind != CallbackKind.STK):
        raise_alert(
            FOREIGN_ANSWER_ALERT,
            f"Daraja answered about another id than ours; kept for review, nothing changed ({detail})",
            api=str(kind),
            reason=reason.value,
            correlation_id=correlation_id,
            transaction_id=None if transaction_id is None else str(transaction_id),
        )


_PAYOUT_OUTCOMES = {
    PayoutEffect.SUCCESS_RECORDED: Outcome.SUCCESS_RECORDED,
    PayoutEffect.FAILURE_RECORDED: Outcome.FAILURE_RECORDED,
    PayoutEffect.OUTCOME_UNKNOWN: Outcome.TIMEOUT_RECORDED,
    PayoutEffect.CONFIRMED: Outcome.CONFIRMED,
    PayoutEffect.CONFIRMED_AGAIN: Outcome.DUPLICATE,  # nothing changes; audited for its asker
    PayoutEffect.DUPLICATE: Outcome.DUPLICATE,
    PayoutEffect.NOTHING_SETTLED: Outcome.STATUS_RECORDED,
    PayoutEffect.CONTRADICTED: Outcome.MISMATCH,  # the evidence went to REVIEW, the answer kept
}


def _payout_outcome(
    kind: CallbackKind,
    ocid: str,
    result: PayoutResult,
    delivery: Delivery,
    unknown: str = payout_evidence.NO_SUCH_PAYOUT,
) -> Outcome:
    """The endpoint's outcome of a B2C answer the application judged; a kept answer is logged, and
    alerted when it is about another payment than ours."""
    judgement = result.judgement
    if judgement is None:
        reason = ReviewReason.UNKNOWN_ID
        _log_review(kind, reason, ocid, delivery.remote_addr)
        _alert_if_foreign(kind, reason, unknown, ocid, None)
        return Outcome.UNKNOWN
    if judgement.problem is not None:
        reason = ReviewReason(judgement.problem.value)
        _log_review(kind, reason, ocid, delivery.remote_addr)
        if reason is not ReviewReason.STATUS_FAILED:  # the provider's word, not a foreign answer
            _alert_if_foreign(kind, reason, judgement.detail, ocid, result.transaction_id)
    if judgement.effect is PayoutEffect.REVIEW:
        return Outcome.CONFLICT if judgement.conflict else Outcome.MISMATCH
    return _PAYOUT_OUTCOMES[judgement.effect]


def _arrival(kind: CallbackKind, raw: bytes, delivery: Delivery) -> Arrival:
    return Arrival(kind.value, raw, delivery.remote_addr, delivery.received_at)


def b2c_result_evidence(cb: B2CResult) -> B2CResultEvidence:
    """The parsed result as the domain judges it: codes and amounts in their stored forms."""
    code = cb.envelope.result_code
    return B2CResultEvidence(
        originator_conversation_id=cb.originator_conversation_id,
        conversation_id=cb.conversation_id,
        paid=cb.succeeded,
        result_code=code_int(code),
        result_code_shown=str(code),
        result_desc=_desc(code, cb.envelope.result_desc),
        amount_cents=cents(cb.amount),
        amount_shown=str(cb.amount),
        receipt=cb.receipt,
        raw=_raw_text(cb.raw),
    )


def status_answer(cb: TransactionStatusResult, ocid: str) -> StatusAnswer:
    """A Transaction Status result about the payout `ocid`, as the domain judges it."""
    return StatusAnswer(
        originator_conversation_id=ocid,
        succeeded=cb.envelope.succeeded,
        completed=cb.completed,
        final_failure=cb.final_failure,
        transaction_status=cb.transaction_status,
        failure_desc=_status_failure(cb),
        named_originator_conversation_id=cb.named_originator_conversation_id,
        subject_conversation_id=cb.subject_conversation_id,
        receipt=cb.receipt,
        amount_cents=cents(cb.amount),
        amount_shown=str(cb.amount),
        party=cb.party,
        raw=_raw_text(cb.raw),
    )
