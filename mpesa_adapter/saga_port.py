"""MpesaGateway for the sagas: the Daraja client plus the callback inbox's confirmer.

Failures become the saga's three kinds (application.payments.errors): anything that proves
nothing was sent or accepted is refused (STK) or unavailable (B2C, re-sent later with the same
OriginatorConversationID); a timeout after the request left is an unknown outcome.

Only Daraja's own business refusal (its error envelope, for a request that reached it) is final.
A set-up error (HTTP 401/403/404/405, an HTML page or any answer that is not Daraja's, wrong
credentials, a token refused after a refresh) and an answer about another request than ours end
nothing: the payment waits (an unknown outcome: the STK push goes to a person after the call
grace, a B2C is sent again with the same OriginatorConversationID, never refunded) and an alert
is raised.
"""

from __future__ import annotations

from datetime import datetime

from application.payments.errors import CallDeferred, CallOutcomeUnknown, CallRefused, CallUnavailable
from application.payments.lost_push import LostPushRecords, push_reference
from application.payments.ports import StkPushAccepted, Verdict
from domain.payments.stk_evidence import StkQueryAnswer
from domain.payments.transaction import Transaction
from domain.shared.ids import TransactionId
from domain.wallet.money import Money
from mpesa_adapter import errors
from mpesa_adapter.alerting import SETUP_ERROR_ALERT, alert_setup_error
from mpesa_adapter.client import DarajaClient
from mpesa_adapter.confirmer import CallbackConfirmer, Confirmation
from mpesa_adapter.confirmer import Verdict as AdapterVerdict
from mpesa_adapter.lost_push_reads import LostPushReads

_VERDICTS = {
    AdapterVerdict.CONFIRMED: Verdict.CONFIRMED,
    AdapterVerdict.FAILED: Verdict.FAILED,
    AdapterVerdict.PENDING: Verdict.PENDING,
    AdapterVerdict.MISMATCH: Verdict.MISMATCH,
}

# Daraja publishes no limits and no Retry-After ("System is busy. Please try again in few minutes."):
# a per-second spike arrest clears quickly, a spent quota does not.
SPIKE_ARREST_RETRY_AFTER = 5.0
QUOTA_RETRY_AFTER = 300.0


__all__ = ["SETUP_ERROR_ALERT", "DarajaMpesaGateway"]


class DarajaMpesaGateway:
    def __init__(
        self, client: DarajaClient, confirmer: CallbackConfirmer, *, lost_push: LostPushReads | None = None
    ) -> None:
        self._client = client
        self._confirmer = confirmer
        self._lost_push = lost_push  # None: a lost push's answer is left to people

    async def stk_push(self, *, transaction_id: TransactionId, phone: str, amount: Money) -> StkPushAccepted:
        try:
            accepted = await self._client.stk_push(
                phone=phone,
                amount_cents=amount.amount_minor,
                # the saga and the review queue look a lost push up in Pull Transactions by it
                account_reference=push_reference(transaction_id),
                description="PenPay",
            )
        except errors.OutcomeUnknown as exc:
            raise CallOutcomeUnknown(f"STK push: {exc}") from None
        except (errors.SpikeArrest, errors.SubscriberLocked, errors.TransportError) as exc:
            raise CallUnavailable(f"STK push not sent: {type(exc).__name__}") from None
        except errors.DarajaError as exc:
            if errors.is_setup_error(exc):
                raise _waiting("stk_push", exc, transaction_id=str(transaction_id)) from None
            raise CallRefused(f"STK push refused: {exc}") from None
        except errors.InvalidRequest as exc:
            raise CallRefused(f"STK push refused: {exc}") from None
        return StkPushAccepted(accepted.checkout_request_id, accepted.merchant_request_id)

    async def query_stk(self, deposit: Transaction) -> StkQueryAnswer | Verdict:
        asked = await self._confirmer.ask_stk(deposit)
        return _VERDICTS[asked.verdict] if isinstance(asked, Confirmation) else asked

    async def stk_answer_recorded(self, checkout_request_id: str, *, parked: bool = False) -> bool:
        return await self._confirmer.adopt_early_stk(checkout_request_id, parked=parked)

    async def lost_push_records(self, *, since: datetime, until: datetime) -> LostPushRecords:
        if self._lost_push is None:
            raise CallUnavailable("Pull Transactions is not configured for the saga")
        return await self._lost_push.records(since=since, until=until)

    async def b2c(self, *, originator_conversation_id: str, phone: str, amount: Money) -> str:
        try:
            accepted = await self._client.b2c_payment(
                originator_conversation_id=originator_conversation_id,
                phone=phone,
                amount_cents=amount.amount_minor,
            )
        except errors.DuplicateOriginatorConversationID:
            return ""  # an earlier attempt with this id was accepted
        except errors.OutcomeUnknown as exc:
            raise CallOutcomeUnknown(f"B2C: {exc}") from None
        except errors.ForeignAnswer as foreign:
            # It was sent and something was accepted, but not provably ours: it may have gone, so it
            # is neither accepted nor refused. The same id goes again; Daraja refuses a duplicate.
            await self._confirmer.keep_foreign_answer(foreign)
            raise CallOutcomeUnknown(f"B2C: {foreign}") from None
        except errors.SpikeArrest as exc:  # Apigee refused it before M-Pesa saw it: not an attempt
            wait = QUOTA_RETRY_AFTER if isinstance(exc, errors.QuotaViolation) else SPIKE_ARREST_RETRY_AFTER
            raise CallDeferred(f"B2C held back: {type(exc).__name__}", retry_after=wait) from None
        except (errors.SubscriberLocked, errors.TransportError) as exc:
            raise CallUnavailable(f"B2C not sent: {type(exc).__name__}") from None
        except errors.DarajaError as exc:
            if errors.is_setup_error(exc):
                raise _waiting("b2c", exc, correlation_id=originator_conversation_id) from None
            raise CallRefused(f"B2C refused: {exc}") from None
        except errors.InvalidRequest as exc:
            raise CallRefused(f"B2C refused: {exc}") from None
        return accepted.conversation_id

    async def confirm_b2c(
        self, originator_conversation_id: str, *, read: Transaction | None = None
    ) -> Verdict:
        return _VERDICTS[(await self._confirmer.confirm_b2c(originator_conversation_id, read=read)).verdict]


def _waiting(api: str, exc: errors.DarajaError, **ids: str) -> CallOutcomeUnknown:
    """A set-up error: alert, and leave the payment waiting. Unknown rather than unavailable because an
    answer that is not Daraja's (a proxy's page) does not prove the request stopped there."""
    alert_setup_error(api, exc, **ids)
    return CallOutcomeUnknown(f"{api} set-up error: {type(exc).__name__} {exc.error_code}")
