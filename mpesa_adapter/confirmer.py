"""Out-of-band confirmation of a recorded callback, before anything is credited (daraja-protocol.md 10.2.4).

Called by the saga workers (from the outbox event the inbox wrote), never in the HTTP request path.

STK: STK Query is synchronous, so `confirm_stk` answers at once (`ask_stk` asks only: the saga
records the answer itself, in the commit of what it decides, and `confirm_stk` records it in a unit of
work of its own; either way the application records it on the Transaction aggregate: MpesaEvidence)
  recorded success + query "0"        -> CONFIRMED (row SUCCEEDED -> CONFIRMED; `newly_confirmed` is True
                                         for exactly one caller: that caller credits)
  recorded success + query failure    -> MISMATCH  (row -> REVIEW, evidence kept for review)
  query "being processed"/unknown/
  spike arrest/transport failure      -> PENDING   (ask again later)
  no callback yet (row SENT): query "0" -> CONFIRMED without a receipt; query failure -> FAILED.
  query answered about another CheckoutRequestID/MerchantRequestID -> PENDING (nothing changes; the
                                         answer is kept for review and an alert raised)
`adopt_early_stk` takes in a callback that arrived before the saga stored the push's answer.

B2C: Transaction Status answers asynchronously (to the status ResultURL, where the inbox settles the row),
so `confirm_b2c` returns what the row already proves, or sends one Transaction Status query and returns
PENDING; the worker calls again later.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from application.alerts import raise_alert
from application.payments.mpesa_evidence import QueryResult
from domain.payments.stk_evidence import QueryEffect, StkQueryAnswer
from domain.payments.transaction import Transaction
from mpesa_adapter import errors
from mpesa_adapter.alerting import FOREIGN_ANSWER_ALERT, alert_setup_error
from mpesa_adapter.callback_store import (
    CONFIRMED,
    FAILED,
    REVIEW,
    SENT,
    SUCCEEDED,
    UNKNOWN,
    StoredDisbursement,
    StoredRequest,
    code_int,
)
from mpesa_adapter.inbox import Outcome
from mpesa_adapter.types import RequestAccepted, StkQueryResult, StkQueryStatus

log = logging.getLogger("penpay.mpesa.confirmer")


class Verdict(StrEnum):
    CONFIRMED = "CONFIRMED"
    MISMATCH = "MISMATCH"
    PENDING = "PENDING"
    FAILED = "FAILED"  # proven not paid (only for a request that had no success recorded)


@dataclass(frozen=True)
class Confirmation:
    verdict: Verdict
    # True for the one caller whose call moved the row to CONFIRMED: only that caller credits.
    newly_confirmed: bool = False
    detail: str = ""


class DarajaQueries(Protocol):
    async def stk_query(
        self, checkout_request_id: str, *, merchant_request_id: str | None = None
    ) -> StkQueryResult: ...

    async def transaction_status(
        self,
        *,
        originator_conversation_id: str | None = None,
        transaction_id: str | None = None,
        remarks: str = ...,
        occasion: str | None = None,
    ) -> RequestAccepted: ...


class ConfirmationStore(Protocol):
    async def stk_request(
        self, checkout_request_id: str, *, read: Transaction | None = None
    ) -> StoredRequest | None: ...

    async def disbursement(
        self, originator_conversation_id: str, *, read: Transaction | None = None
    ) -> StoredDisbursement | None: ...

    async def stk_query_answered(
        self, checkout_request_id: str, answer: StkQueryAnswer, *, read: StoredRequest | None = None
    ) -> QueryResult: ...

    async def adopt_early_stk_callbacks(
        self, checkout_request_id: str, *, parked: bool = False
    ) -> tuple[Outcome, ...]: ...

    async def keep_answer_for_review(
        self, api: str, detail: str, correlation_id: str, raw: bytes
    ) -> None: ...


class CallbackConfirmer:
    def __init__(self, client: DarajaQueries, store: ConfirmationStore) -> None:
        self._client = client
        self._store = store

    async def confirm_stk(self, checkout_request_id: str, *, read: Transaction | None = None) -> Confirmation:
        """Ask STK Query and record a final answer in a unit of work of its own. `read`: the deposit
        as the caller just read it: not read again."""
        row = await self._store.stk_request(checkout_request_id, read=read)
        if row is None:
            raise LookupError(f"no stored MpesaRequest {checkout_request_id}")
        asked = await self._ask(checkout_request_id, row)
        if isinstance(asked, Confirmation):
            return asked
        # The application records it on the aggregate (the one writer of the evidence).
        result = await self._store.stk_query_answered(checkout_request_id, asked, read=row)
        if result.effect is QueryEffect.CONTRADICTED:
            log.warning("stk %s: callback success contradicted by STK Query", checkout_request_id)
        return _query_confirmation(result)

    async def ask_stk(self, deposit: Transaction) -> StkQueryAnswer | Confirmation:
        """Ask STK Query about `deposit`'s push (as its saga step read it, under its lock) and
        return a final answer for the caller to record with what it decides, in one commit; or,
        when there is nothing to record (settled already, no final answer yet), the verdict."""
        request = deposit.mpesa_request
        if request is None:
            raise LookupError(f"transaction {deposit.id} has no MpesaRequest")
        row = await self._store.stk_request(request.checkout_request_id, read=deposit)
        if row is None:
            raise LookupError(f"no stored MpesaRequest {request.checkout_request_id}")
        return await self._ask(request.checkout_request_id, row)

    async def _ask(self, checkout_request_id: str, row: StoredRequest) -> StkQueryAnswer | Confirmation:
        settled = _settled_stk(row)
        if settled is not None:
            return settled
        try:
            query = await self._client.stk_query(
                checkout_request_id, merchant_request_id=row.merchant_request_id
            )
        except (errors.SpikeArrest, errors.TransportError) as exc:
            return Confirmation(Verdict.PENDING, detail=f"query not answered: {type(exc).__name__}")
        except errors.ForeignAnswer as foreign:
            # Never paid, never failed on an answer about someone else: ask again later.
            await self.keep_foreign_answer(foreign)
            return Confirmation(Verdict.PENDING, detail=str(foreign))
        except errors.DarajaError as exc:
            if not errors.is_setup_error(exc):
                raise
            alert_setup_error("stk_query", exc, correlation_id=checkout_request_id)
            return Confirmation(Verdict.PENDING, detail=f"STK Query set-up error: {exc.error_code}")
        if query.status in (StkQueryStatus.PENDING, StkQueryStatus.UNKNOWN):
            return Confirmation(Verdict.PENDING, detail=f"STK Query: {query.status}")
        evidence = json.dumps(
            {
                "source": "STK Query",
                "status": query.status,
                "result_code": query.result_code,
                "result_desc": query.result_desc,
                "checkout_request_id": checkout_request_id,
            }
        )
        code = query.result_code or ""
        return StkQueryAnswer(
            paid=query.status == StkQueryStatus.COMPLETED,
            result_code=code_int(code),
            result_desc=query.result_desc or code,
            evidence=evidence,
        )

    async def keep_foreign_answer(self, foreign: errors.ForeignAnswer) -> None:
        """An answer about another request than ours: an alert now, the raw answer kept for review under
        our id. The alert comes first: losing the review row (the database away) must not silence it."""
        raise_alert(
            FOREIGN_ANSWER_ALERT,
            f"Daraja's {foreign.api} answer is about {foreign.field} {foreign.got!r}, not ours; "
            "not used, kept for review",
            api=foreign.api,
            correlation_id=foreign.expected,
        )
        try:
            await self._store.keep_answer_for_review(foreign.api, str(foreign), foreign.expected, foreign.raw)
        except Exception as error:  # the alert is out; the caller still treats the answer as unknown
            log.error("foreign %s answer for %s not stored: %s", foreign.api, foreign.expected, error)

    async def adopt_early_stk(self, checkout_request_id: str, *, parked: bool = False) -> bool:
        """The push's answer is stored now: a callback that came before it (parked as unknown) is
        recorded as evidence (or for review, when it disagrees). True when one was taken in.
        `parked`: the caller saw one parked, so no look for one first."""
        return bool(await self._store.adopt_early_stk_callbacks(checkout_request_id, parked=parked))

    async def confirm_b2c(
        self, originator_conversation_id: str, *, read: Transaction | None = None
    ) -> Confirmation:
        """`read`: the withdrawal as the caller (the saga's step) just read it: not read again."""
        row = await self._store.disbursement(originator_conversation_id, read=read)
        if row is None:
            raise LookupError(f"no stored MpesaDisbursement {originator_conversation_id}")
        if row.status == CONFIRMED:
            return Confirmation(Verdict.CONFIRMED, detail=f"receipt {row.transaction_receipt}")
        if row.status == REVIEW:
            return Confirmation(Verdict.MISMATCH, detail="recorded for review")
        if row.status == FAILED:
            return Confirmation(Verdict.FAILED, detail="result or status says not paid")
        if row.status not in (SENT, UNKNOWN, SUCCEEDED):
            return Confirmation(Verdict.PENDING, detail=f"unexpected status {row.status}")
        try:
            await self._client.transaction_status(originator_conversation_id=originator_conversation_id)
        except (errors.SpikeArrest, errors.TransportError) as exc:
            return Confirmation(Verdict.PENDING, detail=f"status query not sent: {type(exc).__name__}")
        except errors.DarajaError as exc:
            if not errors.is_setup_error(exc):
                raise
            alert_setup_error("transaction_status", exc, correlation_id=originator_conversation_id)
            return Confirmation(Verdict.PENDING, detail=f"Transaction Status set-up error: {exc.error_code}")
        return Confirmation(Verdict.PENDING, detail="Transaction Status requested")


_QUERY_VERDICTS = {
    QueryEffect.CONFIRMED: Verdict.CONFIRMED,
    QueryEffect.FAILED: Verdict.FAILED,
    QueryEffect.CONTRADICTED: Verdict.MISMATCH,
}


def _query_confirmation(result: QueryResult) -> Confirmation:
    verdict = _QUERY_VERDICTS.get(result.effect)
    if verdict is not None:
        return Confirmation(verdict, newly_confirmed=result.newly_confirmed)
    # Someone else settled it meanwhile: report what the evidence says now.
    settled = _settled_status(result.status)
    return settled or Confirmation(Verdict.PENDING, detail="row changed concurrently")


def _settled_stk(row: StoredRequest) -> Confirmation | None:
    return _settled_status(row.status)


def _settled_status(status: str) -> Confirmation | None:
    if status == CONFIRMED:
        return Confirmation(Verdict.CONFIRMED, detail="already confirmed")
    if status == REVIEW:
        return Confirmation(Verdict.MISMATCH, detail="recorded for review")
    if status == FAILED:
        return Confirmation(Verdict.FAILED, detail="recorded failure")
    if status in (SENT, SUCCEEDED):
        return None
    return Confirmation(Verdict.PENDING, detail=f"unexpected status {status}")
