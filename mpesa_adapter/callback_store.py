"""SQL adapter of `CallbackInbox` (and of the confirmer's store), SQLAlchemy Core on the existing tables.

STK answers (callbacks, STK Query answers, early callbacks adopted) are parsed here and handed to the
application (application.payments.mpesa_evidence): the Transaction aggregate judges them by the rules
in domain/payments/stk_evidence.py and the unit of work commits the MpesaRequest evidence, the
aggregate's version, its typed events (MpesaCallbackReceived, outbox) and their audit records together.
This module writes no `mpesa_requests` row.

B2C answers (result, queue timeout, Transaction Status) are still recorded here, each in one short
transaction: lock the transaction's row then the disbursement's, found by its OriginatorConversationID
(the saga's lock, so its save never resets a result it did not read), cross-check it, apply the terminal
state with a guarded UPDATE (`... WHERE status = :old`), so a second delivery changes nothing (a reused
receipt is an IntegrityError, caught in a savepoint and recorded for review), and write an outbox row
(`domain_events`, stream `penpay.mpesa`) for the worker. Attachment states written here (String(16)):
  mpesa_disbursements: SENT|UNKNOWN -> SUCCEEDED -> CONFIRMED | REVIEW ; SENT|UNKNOWN -> FAILED ;
                       SENT -> UNKNOWN (queue timeout) ;
                       SENT|UNKNOWN|SUCCEEDED -> CONFIRMED (Transaction Status)
The raw body is kept: in the evidence row when it settled the request, in `mpesa_callback_reviews` when
it was unknown, mismatching, conflicting or rejected.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from application.alerts import raise_alert
from application.payments.mpesa_evidence import (
    Arrival,
    CallbackResult,
    KeptAnswer,
    MpesaEvidence,
    QueryResult,
)
from domain.payments.paybill import visible_digits_agree
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
from persistence.tables import (
    audit_logs,
    audit_pending,
    domain_events,
    mpesa_disbursements,
    mpesa_requests,
    transactions,
)
from persistence.unit_of_work import SqlUnitOfWork

log = logging.getLogger("penpay.mpesa.callbacks")

SENT = "SENT"
SUCCEEDED = "SUCCEEDED"
CONFIRMED = "CONFIRMED"
FAILED = "FAILED"
UNKNOWN = "UNKNOWN"
REVIEW = "REVIEW"

_RECORDED = (Outcome.SUCCESS_RECORDED, Outcome.FAILURE_RECORDED)

RECEIPT_RE = re.compile(r"^[A-Z0-9]{10}$")
EVENT_STREAM = "penpay.mpesa"

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
NO_CONVERSATION_ID = "DUPLICATE-OCID"


# Account Balance queries we sent live in the audit trail (a step PenPay took, with the ids Daraja gave
# it), subject MpesaBalanceQuery / ConversationID: a balance result is believed only when it answers one.
BALANCE_QUERY_SUBJECT = "MpesaBalanceQuery"
# Transaction Status answers that confirm a payout already CONFIRMED, by the query's ConversationID
STATUS_QUERY_SUBJECT = "MpesaStatusQuery"
STATUS_CONFIRMED_AGAIN = "mpesa.status_query.confirmed_again"
BALANCE_QUERY_SENT = "mpesa.balance_query.sent"
BALANCE_QUERY_ANSWERED = "mpesa.balance_query.answered"
ADAPTER_ACTOR = "penpay:mpesa-adapter"


def _held_conversation_id(row: Any) -> str | None:
    held = row.conversation_id
    return None if held in (None, "", NO_CONVERSATION_ID) else str(held)


def _about_this_payout(cb: TransactionStatusResult, row: Any, ocid: str) -> bool:
    """A final Transaction Status answer is about this payout: its customer, where shown, is the
    payee; and it names our OriginatorConversationID, the ConversationID or receipt we hold, or
    (naming none, e.g. asked about a receipt) shows the customer at all."""
    if cb.party is not None and not visible_digits_agree(cb.party, row.phone):
        return False
    held = _held_conversation_id(row)
    return (
        cb.named_originator_conversation_id == ocid
        or (held is not None and cb.subject_conversation_id == held)
        or (row.transaction_receipt is not None and row.transaction_receipt == cb.receipt)
        or cb.party is not None
    )


def _status_confirmed(cb: TransactionStatusResult, ocid: str, delivery: Delivery) -> AuditRecord:
    return AuditRecord(
        occurred_at=delivery.received_at,
        actor=ADAPTER_ACTOR,
        action=STATUS_CONFIRMED_AGAIN,
        subject_type=STATUS_QUERY_SUBJECT,
        subject_id=str(cb.envelope.conversation_id or ocid),
        details={"originator_conversation_id": ocid, "receipt": cb.receipt, "amount": str(cb.amount)},
    )


def new_uuid7() -> uuid.UUID:
    """Local UUIDv7 (ms timestamp + random), so this package needs nothing unfinished from domain/."""
    value = (time.time_ns() // 1_000_000 & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | secrets.randbits(12) << 64 | 0b10 << 62 | secrets.randbits(62)
    return uuid.UUID(int=value)


def _now() -> datetime:
    return datetime.now(UTC)


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
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # The evidence is the application's to write: the aggregate, in a unit of work. Its audit
        # record (MpesaCallbackReceived) is committed with the evidence and chained by the next seal
        # of any process: the background sealer's, or (inline) the saga's that the callback wakes.
        self._evidence = MpesaEvidence(
            lambda: SqlUnitOfWork(engine, actor=ADAPTER_ACTOR, wait_for_seal=False, seal_here=False)
        )

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

    async def adopt_early_stk_callbacks(self, checkout_request_id: str) -> tuple[Outcome, ...]:
        """Take in the STK callbacks parked as UNKNOWN_ID because they arrived before the saga stored
        the push's answer (a fast payer beats the commit); see MpesaEvidence.adopt_early_stk_callbacks.
        Returns the outcomes, empty when nothing was parked.

        The bodies are re-parsed with the endpoint's parser: each was authenticated (path secret,
        allow-list) before it was parked, so it deserves what a callback arriving now would get."""
        results = await self._evidence.adopt_early_stk_callbacks(checkout_request_id, _parse_parked)
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
        kind = CallbackKind.B2C_RESULT
        ocid = cb.originator_conversation_id
        async with self._engine.begin() as conn:
            row = await self._lock_disbursement(conn, ocid)
            if row is None:
                return await self._review(
                    conn,
                    kind,
                    ReviewReason.UNKNOWN_ID,
                    "no such OriginatorConversationID",
                    ocid,
                    None,
                    cb.raw,
                    delivery,
                    Outcome.UNKNOWN,
                )
            tx_id = row.transaction_id

            async def review(
                reason: ReviewReason, detail: str, outcome: Outcome = Outcome.MISMATCH
            ) -> Outcome:
                return await self._review(conn, kind, reason, detail, ocid, tx_id, cb.raw, delivery, outcome)

            held = _held_conversation_id(row)
            if held and cb.conversation_id and held != cb.conversation_id:
                return await review(ReviewReason.CONVERSATION_ID_MISMATCH, "ConversationID differs")
            if cb.succeeded:
                if row.amount_currency != "KES" or cents(cb.amount) != row.amount_cents:
                    return await review(
                        ReviewReason.AMOUNT_MISMATCH,
                        f"result amount {cb.amount} vs stored {row.amount_cents} cents",
                    )
                if not cb.receipt:
                    return await review(ReviewReason.RECEIPT_MISSING, "success without TransactionReceipt")
                if not RECEIPT_RE.match(cb.receipt):
                    return await review(
                        ReviewReason.RECEIPT_INVALID, "TransactionReceipt has not the receipt format"
                    )
            if row.status not in (SENT, UNKNOWN):
                if (
                    cb.succeeded
                    and row.status in (SUCCEEDED, CONFIRMED)
                    and row.transaction_receipt == cb.receipt
                ):
                    return Outcome.DUPLICATE
                if (
                    not cb.succeeded
                    and row.status == FAILED
                    and row.result_code == code_int(cb.envelope.result_code)
                ):
                    return Outcome.DUPLICATE
                return await review(
                    ReviewReason.CONFLICTING_RESULT,
                    f"ResultCode {cb.envelope.result_code} for a disbursement already {row.status}",
                    Outcome.CONFLICT,
                )
            values: dict[str, Any] = {
                "result_code": code_int(cb.envelope.result_code),
                "result_desc": _desc(cb.envelope.result_code, cb.envelope.result_desc),
                "raw_result": _raw_text(cb.raw),
                "updated_at": _now(),
                "status": SUCCEEDED if cb.succeeded else FAILED,
            }
            if cb.conversation_id and not _held_conversation_id(row):
                values["conversation_id"] = cb.conversation_id
            if cb.succeeded:
                values["transaction_receipt"] = cb.receipt
            guarded = (
                update(mpesa_disbursements)
                .where(mpesa_disbursements.c.originator_conversation_id == ocid)
                .where(mpesa_disbursements.c.status == row.status)
                .values(**values)
            )
            try:
                async with conn.begin_nested():
                    changed = (await conn.execute(guarded)).rowcount
            except IntegrityError:
                return await review(ReviewReason.RECEIPT_REUSED, "TransactionReceipt already used")
            if changed != 1:
                return Outcome.DUPLICATE
            outcome = Outcome.SUCCESS_RECORDED if cb.succeeded else Outcome.FAILURE_RECORDED
            await self._event(
                conn,
                tx_id,
                "MpesaB2CResultRecorded",
                {
                    "originator_conversation_id": ocid,
                    "outcome": outcome.value,
                    "result_code": cb.envelope.result_code,
                    "transaction_receipt": cb.receipt,
                },
            )
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
        async with self._engine.begin() as conn:
            row = await self._lock_disbursement(conn, ocid)
            if row is None:
                return await self._review(
                    conn,
                    kind,
                    ReviewReason.UNKNOWN_ID,
                    "no such OriginatorConversationID",
                    ocid,
                    None,
                    cb.raw,
                    delivery,
                    Outcome.UNKNOWN,
                )
            held = _held_conversation_id(row)
            if held and cb.conversation_id and held != cb.conversation_id:
                return await self._review(
                    conn,
                    kind,
                    ReviewReason.CONVERSATION_ID_MISMATCH,
                    "ConversationID differs",
                    ocid,
                    row.transaction_id,
                    cb.raw,
                    delivery,
                    Outcome.MISMATCH,
                )
            if row.status != SENT:
                return Outcome.DUPLICATE  # a late timeout after the result, or a second timeout
            await conn.execute(
                update(mpesa_disbursements)
                .where(mpesa_disbursements.c.originator_conversation_id == ocid)
                .where(mpesa_disbursements.c.status == SENT)
                .values(
                    status=UNKNOWN,
                    result_code=code_int(cb.envelope.result_code),
                    result_desc=_desc(cb.envelope.result_code, cb.envelope.result_desc),
                    raw_result=_raw_text(cb.raw),
                    updated_at=_now(),
                )
            )
            await self._event(
                conn,
                row.transaction_id,
                "MpesaB2COutcomeUnknown",
                {"originator_conversation_id": ocid, "outcome": Outcome.TIMEOUT_RECORDED.value},
            )
        log.info("b2c queue timeout originator_conversation_id=%s -> outcome unknown", ocid)
        return Outcome.TIMEOUT_RECORDED

    async def record_status_result(self, cb: TransactionStatusResult, delivery: Delivery) -> Outcome:
        """A Transaction Status answer about one of our B2C payouts: "Completed" settles it as CONFIRMED
        (exactly one payout: the disbursement row holds the receipt, UNIQUE); a final failure of a payout
        still SENT/UNKNOWN settles it as FAILED; anything else is kept as evidence only."""
        kind = CallbackKind.STATUS_RESULT
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
            async with self._engine.begin() as conn:
                return await self._review(
                    conn,
                    kind,
                    ReviewReason.STATUS_FAILED,
                    _status_failure(cb),
                    cb.envelope.conversation_id,
                    None,
                    cb.raw,
                    delivery,
                    Outcome.STATUS_RECORDED,
                    alert=False,
                )
        async with self._engine.begin() as conn:
            if cb.names_another_than_asked():
                # The Occasion is ours (the id we asked about); the parameters are about another payment.
                asked = await self._lock_disbursement(conn, cb.occasion)
                return await self._review(
                    conn,
                    kind,
                    ReviewReason.FOREIGN_ANSWER,
                    f"asked about {cb.occasion}, answered about {cb.named_originator_conversation_id}",
                    cb.occasion,
                    asked.transaction_id if asked is not None else None,
                    cb.raw,
                    delivery,
                    Outcome.MISMATCH,
                )
            row = await self._lock_disbursement(conn, ocid) if ocid else None
            if row is None or ocid is None:
                return await self._review(
                    conn,
                    kind,
                    ReviewReason.UNKNOWN_ID,
                    "status result for no known disbursement",
                    ocid,
                    None,
                    cb.raw,
                    delivery,
                    Outcome.UNKNOWN,
                )
            tx_id = row.transaction_id

            async def review(
                reason: ReviewReason, detail: str, outcome: Outcome = Outcome.MISMATCH
            ) -> Outcome:
                return await self._review(conn, kind, reason, detail, ocid, tx_id, cb.raw, delivery, outcome)

            if not cb.envelope.succeeded and cb.named_originator_conversation_id is None:
                # The query itself failed (e.g. "no such transaction" for a receipt an operator
                # offered): it settles nothing, and is kept as the provider's word under our id.
                return await self._review(
                    conn,
                    kind,
                    ReviewReason.STATUS_FAILED,
                    _status_failure(cb),
                    ocid,
                    tx_id,
                    cb.raw,
                    delivery,
                    Outcome.STATUS_RECORDED,
                    alert=False,
                )

            # Whatever it says, an answer naming another ConversationID or receipt than the ones we hold
            # is about another payment: it settles nothing and changes nothing.
            held = _held_conversation_id(row)
            if held and cb.subject_conversation_id and held != cb.subject_conversation_id:
                return await review(ReviewReason.FOREIGN_ANSWER, "status result names another ConversationID")
            if row.transaction_receipt and cb.receipt and row.transaction_receipt != cb.receipt:
                return await review(ReviewReason.FOREIGN_ANSWER, "status result names another receipt")
            if (cb.completed or cb.final_failure) and not _about_this_payout(cb, row, ocid):
                # Neither id names ours (an answer about a receipt an operator typed): the amount
                # alone may be another payout's; the customer it names must be ours.
                return await review(
                    ReviewReason.PHONE_MISMATCH,
                    f"status result names no id of ours and party {cb.party or 'none'} is not the payee",
                )

            if cb.completed:
                if row.amount_currency != "KES" or cents(cb.amount) != row.amount_cents:
                    return await review(ReviewReason.AMOUNT_MISMATCH, f"status amount {cb.amount} vs stored")
                if not cb.receipt or not RECEIPT_RE.match(cb.receipt):
                    return await review(
                        ReviewReason.RECEIPT_INVALID, "status result without a valid ReceiptNo"
                    )
                if row.status == CONFIRMED:
                    if row.transaction_receipt == cb.receipt:
                        # M-Pesa confirms again a payout already settled (reconciliation asks so):
                        # nothing changes, and the answer is kept where its asker looks for it
                        await write_pending(conn, [_status_confirmed(cb, ocid, delivery)])
                        return Outcome.DUPLICATE
                    return await review(ReviewReason.CONFIRMATION_MISMATCH, "a second receipt for one payout")
                if row.status == SUCCEEDED and row.transaction_receipt != cb.receipt:
                    await self._set_disbursement(conn, ocid, row.status, status=REVIEW)
                    return await review(
                        ReviewReason.CONFIRMATION_MISMATCH, "status receipt differs from the result's"
                    )
                if row.status not in (SENT, UNKNOWN, SUCCEEDED):
                    return await review(
                        ReviewReason.CONFIRMATION_MISMATCH,
                        f"Completed for a disbursement {row.status}",
                        Outcome.CONFLICT,
                    )
                try:
                    async with conn.begin_nested():
                        changed = await self._set_disbursement(
                            conn,
                            ocid,
                            row.status,
                            status=CONFIRMED,
                            transaction_receipt=cb.receipt,
                            **(
                                {}
                                if row.status == SUCCEEDED
                                else {"result_code": 0, "raw_result": _raw_text(cb.raw)}
                            ),
                        )
                except IntegrityError:
                    return await review(ReviewReason.RECEIPT_REUSED, "ReceiptNo already used")
                if changed != 1:
                    return Outcome.DUPLICATE
                await self._event(
                    conn,
                    tx_id,
                    "MpesaB2CConfirmed",
                    {
                        "originator_conversation_id": ocid,
                        "transaction_receipt": cb.receipt,
                        "outcome": "CONFIRMED",
                    },
                )
                log.info("status result originator_conversation_id=%s: payout confirmed", ocid)
                return Outcome.CONFIRMED
            if cb.final_failure and row.status in (SENT, UNKNOWN):
                await self._set_disbursement(
                    conn,
                    ocid,
                    row.status,
                    status=FAILED,
                    result_desc=f"status: {cb.transaction_status}"[:255],
                    raw_result=_raw_text(cb.raw),
                )
                await self._event(
                    conn,
                    tx_id,
                    "MpesaB2CResultRecorded",
                    {"originator_conversation_id": ocid, "outcome": Outcome.FAILURE_RECORDED.value},
                )
                return Outcome.FAILURE_RECORDED
            if cb.final_failure and row.status in (SUCCEEDED, CONFIRMED):
                await self._set_disbursement(conn, ocid, row.status, status=REVIEW)
                return await review(
                    ReviewReason.CONFIRMATION_MISMATCH, f"status {cb.transaction_status} after success"
                )
        log.info(
            "status result originator_conversation_id=%s result_code=%s status=%s: nothing settled",
            ocid,
            cb.envelope.result_code,
            cb.transaction_status,
        )
        return Outcome.STATUS_RECORDED

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

    async def stk_request(self, checkout_request_id: str) -> StoredRequest | None:
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

    async def disbursement(self, originator_conversation_id: str) -> StoredDisbursement | None:
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
        async with self._engine.begin() as conn:
            found = (
                await conn.execute(
                    select(mpesa_requests.c.transaction_id)
                    .where(mpesa_requests.c.checkout_request_id == correlation_id)
                    .union_all(
                        select(mpesa_disbursements.c.transaction_id).where(
                            mpesa_disbursements.c.originator_conversation_id == correlation_id
                        )
                    )
                )
            ).first()
            await self._review(
                conn,
                api,
                ReviewReason.FOREIGN_ANSWER,
                detail,
                correlation_id,
                found.transaction_id if found is not None else None,
                raw,
                Delivery(None),
                Outcome.MISMATCH,
                alert=False,  # the caller raised it before storing (CallbackConfirmer.keep_foreign_answer)
            )

    async def transition_disbursement(self, ocid: str, from_status: str, to_status: str) -> bool:
        async with self._engine.begin() as conn:
            await self._lock_disbursement(conn, ocid)
            return await self._set_disbursement(conn, ocid, from_status, status=to_status) == 1

    # --- helpers --------------------------------------------------------------------------

    @staticmethod
    async def _lock_disbursement(conn: AsyncConnection, ocid: str | None) -> Any:
        """The disbursement row under its lock, its transaction's row locked first (the order every
        writer takes: review rows, transaction, evidence). The saga rewrites the whole evidence row
        under the transaction's lock alone: a result written without it, between the saga's read and
        its save, would be reset by that save."""
        tx_id = (
            await conn.execute(
                select(mpesa_disbursements.c.transaction_id).where(
                    mpesa_disbursements.c.originator_conversation_id == ocid
                )
            )
        ).scalar_one_or_none()
        if tx_id is None:
            return None
        await conn.execute(select(transactions.c.id).where(transactions.c.id == tx_id).with_for_update())
        return (
            await conn.execute(
                select(mpesa_disbursements)
                .where(mpesa_disbursements.c.originator_conversation_id == ocid)
                .with_for_update()
            )
        ).first()

    @staticmethod
    async def _set_disbursement(conn: AsyncConnection, ocid: str, from_status: str, **values: Any) -> int:
        values["updated_at"] = _now()
        result = await conn.execute(
            update(mpesa_disbursements)
            .where(mpesa_disbursements.c.originator_conversation_id == ocid)
            .where(mpesa_disbursements.c.status == from_status)
            .values(**values)
        )
        return int(result.rowcount)

    @staticmethod
    async def _event(
        conn: AsyncConnection, transaction_id: uuid.UUID, event_type: str, payload: dict[str, Any]
    ) -> None:
        await conn.execute(
            insert(domain_events).values(
                id=new_uuid7(),
                stream=EVENT_STREAM,
                aggregate_type="Transaction",
                aggregate_id=str(transaction_id),
                aggregate_version=None,
                event_type=event_type,
                payload=json.dumps(payload, separators=(",", ":"), sort_keys=True),
                occurred_at=_now(),
                published_at=None,
                publish_attempts=0,
            )
        )

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
