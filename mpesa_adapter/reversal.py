"""Daraja's Reversal API for suspense refunds: the port the review action calls, and what its result
endpoints hand to the use case (application.review.paybill_refund).

The Reversal Result body is not in the anchors; its shape here is inferred from the public Reversal
page and SDK samples (the `{"Result": {...}}` envelope of B2C: ResultType, ResultCode, ResultDesc,
OriginatorConversationID, ConversationID, TransactionID = the reversal's receipt, and
ResultParameters such as Amount, OriginalTransactionID, TransCompletedTime, CreditPartyPublicName).
Only the envelope is required; a parameter that is there must agree with our request.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from application.review.errors import EvidenceUnavailable
from application.review.paybill_refund import (
    ReversalAccepted,
    ReversalOutcomeUnknown,
    ReversalRefused,
    ReversalResult,
)
from mpesa_adapter import errors
from mpesa_adapter.callback_parsing import ResultEnvelope, TransactionStatusResult, _text, amount
from mpesa_adapter.client import DarajaClient
from mpesa_adapter.routes import CallbackKind

log = logging.getLogger("penpay.mpesa.reversal")

FINAL_FAILURES = ("cancelled", "declined", "expired", "failed")


class ReversalResults(Protocol):
    """application.review.paybill_refund.SuspenseRefunds, as the endpoints use it."""

    async def record(self, result: ReversalResult) -> str: ...


def from_result(env: ResultEnvelope, *, timeout: bool = False) -> ReversalResult:
    """The Reversal's own Result (or its queue timeout: not final, the status is asked later)."""
    return ReversalResult(
        originator_conversation_id=env.originator_conversation_id,
        conversation_id=env.conversation_id,
        succeeded=env.succeeded and not timeout,
        final=not timeout,
        result_code=env.result_code,
        result_desc=env.result_desc,
        original_trans_id=_text(env.param("OriginalTransactionID", "OriginalTransID")),
        receipt=env.transaction_id if env.succeeded and not timeout else None,
        amount=amount(env.param("Amount", "TransactionAmount")),
        raw=env.raw.decode("utf-8", "replace"),
        via="result",
    )


def from_status(cb: TransactionStatusResult) -> ReversalResult:
    """Transaction Status about one reversal: Completed settles it, a final failure fails it, a
    query that found nothing or a pending state changes nothing."""
    word = (cb.transaction_status or "").lower()
    completed = cb.envelope.succeeded and word == "completed"
    failed = cb.envelope.succeeded and word in FINAL_FAILURES
    return ReversalResult(
        originator_conversation_id=cb.named_originator_conversation_id or cb.occasion,
        conversation_id=cb.subject_conversation_id,
        succeeded=completed,
        final=completed or failed,
        result_code=cb.envelope.result_code if not cb.envelope.succeeded else (cb.transaction_status or "?"),
        result_desc=cb.envelope.result_desc,
        original_trans_id=None,
        receipt=cb.receipt if completed else None,
        amount=cb.amount,
        raw=cb.raw.decode("utf-8", "replace"),
        via="status",
    )


class DarajaReversals:
    """The Reversals port on the Daraja client."""

    def __init__(self, client: DarajaClient) -> None:
        self._client = client

    async def request_reversal(
        self, *, originator_conversation_id: str, trans_id: str, amount_minor: int, remarks: str
    ) -> ReversalAccepted:
        try:
            accepted = await self._client.reversal(
                originator_conversation_id=originator_conversation_id,
                transaction_id=trans_id,
                amount_cents=amount_minor,
                remarks=remarks,
            )
        except (errors.OutcomeUnknown, errors.ForeignAnswer, errors.DuplicateOriginatorConversationID) as exc:
            # It may have left (or an earlier copy of it did): never sent again, asked about instead.
            raise ReversalOutcomeUnknown(f"{type(exc).__name__}: {exc}"[:200]) from None
        except errors.InvalidRequest as exc:
            raise ReversalRefused("INVALID_REQUEST", str(exc)) from None
        except errors.TransportError as exc:  # never connected: nothing was sent
            raise ReversalRefused("UNAVAILABLE", str(exc)) from None
        except errors.DarajaError as exc:
            raise ReversalRefused(exc.error_code, exc.error_message) from None
        return ReversalAccepted(accepted.originator_conversation_id, accepted.conversation_id)

    async def ask_reversal_status(self, *, originator_conversation_id: str) -> None:
        try:
            await self._client.transaction_status(
                originator_conversation_id=originator_conversation_id,
                remarks="PenPay refund status",
                result_kind=CallbackKind.REVERSAL_STATUS,
            )
        except errors.MpesaAdapterError as exc:  # nothing changed: the approver asks again later
            log.warning("reversal status not asked: %s", type(exc).__name__)
            raise EvidenceUnavailable("M-Pesa could not be asked now; approve again later") from None


def acknowledged(outcome: str) -> dict[str, Any]:
    log.info("reversal answer: %s", outcome)
    return {"ResultCode": 0, "ResultDesc": "Accepted"}
