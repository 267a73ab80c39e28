"""One idempotency contract for every money RPC (PEC 3.1.7 and 10).

- The key is required: metadata `idempotency-key` (HTTP header Idempotency-Key). Missing:
  INVALID_ARGUMENT with a BadRequest violation on `idempotency_key`.
- Only its hash is stored: domain IdempotencyKey, scoped by the user (from the access token)
  and the method, so the same client key of another user or on another method is another key.
  The request's fingerprint is an HMAC under a server key (requests carry phone numbers and
  withdrawal codes, which a plain hash would not hide).
- Repeat with the same key and request within 24 h (REPLAY): the stored bytes are sent as they
  are (success: byte-identical response; error: the same status and details), with trailing
  metadata `idempotent-replayed: true`.
- Same key, different request (MISMATCH): FAILED_PRECONDITION, reason IDEMPOTENCY_KEY_REUSED,
  and trailing metadata `x-http-code: 422` for the HTTP bridge.
- Repeat while the first is still running (IN_FLIGHT): ABORTED, reason IDEMPOTENCY_KEY_IN_FLIGHT.

Where the record is read and written depends on the method:

- `answered_by_use_case` (InitiateDeposit): the use case does it (application/payments/requests.py).
  Its one read finds the record under the key (replay, mismatch) beside the user; a new request's
  response is written with its Transaction, in the same database transaction (the servicer hands
  the use case the encoder of its response). Nothing is claimed first, so nothing is released:
  a refused request wrote nothing, and a crash before the commit left nothing; the unique
  transactions.idempotency_key_hash decides between two new requests racing under one key, and
  the loser answers with the winner's stored response (or MISMATCH). This interceptor only
  computes the key's hash, scope and fingerprint and turns the use case's answer into the replay
  or the refusal above.
- `claimed_by_use_case` (InitiateWithdrawal, ConfirmWithdrawal: their answer comes after a call to
  Deriv): the use case reads the record in its first read (replay, mismatch, in flight are
  answered there), writes the claim (IN_FLIGHT, the lease) in the same database transaction as the
  call's intent, and completes it with its answer in the transaction that records the answer
  (penpay_api/services/payments.py hands it the encoder and `claimed`). InitiateWithdrawal's code
  request moves no money and has no intent: it claims nothing, and writes its answer as a new
  record with its Transaction, as InitiateDeposit does. No transaction of the
  interceptor's own on the way through; on the paths where the use case answered without claiming
  (a repeat of a finished request, a refusal before its intent) the interceptor stores the answer
  as below, as a new COMPLETED record, and releases or completes the use case's claim as below.
- Every other money method: the interceptor claims the key (SqlIdempotencyStore.claim, a short
  transaction of its own: IN_FLIGHT with a 60 s lease) before the servicer runs, and after it
  stores the serialized response, or the error status with details, with complete() in a second
  short transaction of its own (the application's own transaction has committed by then; a crash in
  between is safe because the unique transactions.idempotency_key_hash makes the retried operation
  return the same Transaction, and the lease lets a retry take the key over).
  - Retryable failures (UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, DEADLINE_EXCEEDED, INTERNAL,
    UNKNOWN, cancellation) are not stored: the claim is released so the same key can be retried
    at once (Stripe does the same for 429/409-like outcomes); what is stored is an answer that
    would be the same next time.
  - A definitive error is stored only if the call executed, i.e. changed something a repeat must
    not redo (Stripe: "if incoming parameters failed validation, no idempotent result is saved").
    InitiateWithdrawal (a service's creates_transaction_under_key) writes its Transaction under the
    key's hash, so it executed exactly when that Transaction exists after the call (e.g. Deriv
    refused to email the code: the withdrawal is FAILED, and the refusal is replayed). When none
    exists (an amount out of range, a compliance refusal, an unbound Deriv account), nothing was
    executed: the claim is released and the key stays free, for the same request or a corrected
    one. Any other money method acts on an existing transaction, and may refuse after changing it
    (a rejected verification code fails the withdrawal): its definitive errors are always stored.
    The check is one read of the unique key hash, on the error path only.

The clock is the one given (a FixedClock in tests proves the 24 h expiry); the store must be
built with the same clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from collections.abc import Collection, Mapping
from typing import Any

import grpc
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from application.payments.requests import IdempotencyKeyInFlight, IdempotencyKeyReused, StoredAnswer
from domain.payments.idempotency import IdempotencyKey, request_fingerprint
from domain.shared.clock import Clock
from penpay_api.context import current_call, metadata_value
from penpay_api.errors import (
    HTTP_CODE_KEY,
    RETRYABLE_CODES,
    RpcFailure,
    Violation,
    invalid_argument,
    to_failure,
)
from penpay_api.interceptors import Behavior, Continuation, handlers_of, remember, replace_unary
from persistence.idempotency_release import release_claim
from persistence.idempotency_store import (
    ClaimOutcome,
    SqlIdempotencyStore,
    complete,
    store_answer,
    transaction_exists_under_key,
)

log = structlog.get_logger("penpay.api.idempotency")

IDEMPOTENCY_KEY = "idempotency-key"
REPLAYED_KEY = "idempotent-replayed"
OK_CODE = 0


def _passthrough(serializer: Any) -> Any:
    """A response serializer that sends stored bytes as they are."""

    def serialize(response: Any) -> bytes:
        if isinstance(response, bytes):
            return response
        data: bytes = serializer(response) if serializer else response.SerializeToString()
        return data

    return serialize


def _transaction_id_of(response: Any) -> uuid.UUID | None:
    transaction = getattr(response, "transaction", None)
    text = getattr(transaction, "transaction_id", "") if transaction is not None else ""
    try:
        return uuid.UUID(text) if text else None
    except ValueError:
        return None


def _reused() -> RpcFailure:
    return RpcFailure.build(
        grpc.StatusCode.FAILED_PRECONDITION,
        "this idempotency key was used for a different request; use a new key for a new request",
        reason="IDEMPOTENCY_KEY_REUSED",
        metadata={"field": "idempotency_key"},
        violations=[Violation("idempotency_key", "already used for a different request")],
        extra_trailers=((HTTP_CODE_KEY, "422"),),
    )


def _in_flight() -> RpcFailure:
    return RpcFailure.build(
        grpc.StatusCode.ABORTED,
        "a request with this idempotency key is still being processed; retry shortly",
        reason="IDEMPOTENCY_KEY_IN_FLIGHT",
        retry_after_seconds=1,
        extra_trailers=((HTTP_CODE_KEY, "409"),),
    )


class IdempotencyInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    def __init__(
        self,
        *,
        store: SqlIdempotencyStore,
        engine: AsyncEngine,
        clock: Clock,
        money_methods: Collection[str],
        fingerprint_key: bytes | None = None,
        creates_transaction_under_key: Collection[str] = (),
        answered_by_use_case: Collection[str] = (),
        claimed_by_use_case: Collection[str] = (),
    ) -> None:
        self._store = store
        self._engine = engine
        self._clock = clock
        self.money_methods = set(money_methods)
        # set by the server from its services, as money_methods
        self.creates_transaction_under_key = set(creates_transaction_under_key)
        # set by the server too: the methods whose use case reads and writes the record itself
        self.answered_by_use_case = set(answered_by_use_case)
        # ... and those whose use case claims the key with its intent and completes it with its answer
        self.claimed_by_use_case = set(claimed_by_use_case)
        self._fingerprint_key = fingerprint_key
        # Per method, domain field names -> request field names (set by the server, as for errors).
        self.field_aliases: dict[str, Mapping[str, str]] = {}

    def fingerprint(self, request: Any) -> str:
        """Which request a key was used for. Keyed (HMAC-SHA256) when a key is given: a request can
        hold a phone number or a withdrawal code, and a plain hash of so small a space is reversible."""
        payload = request.SerializeToString(deterministic=True)
        if self._fingerprint_key is None:
            return request_fingerprint(payload)
        return hmac.new(self._fingerprint_key, payload, hashlib.sha256).hexdigest()

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        known = handlers_of(self).get(method)
        if known is not None:
            return known
        handler = await continuation(handler_call_details)
        if handler is None or method not in self.money_methods:
            return remember(self, method, handler)
        if handler.unary_unary is None:
            raise RuntimeError(f"money method {method} must be unary-unary")
        inner: Behavior = handler.unary_unary
        serializer = handler.response_serializer

        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await self._guard(method, inner, serializer, request, context)

        return remember(
            self, method, replace_unary(handler, behavior, response_serializer=_passthrough(serializer))
        )

    async def _guard(
        self,
        method: str,
        inner: Behavior,
        serializer: Any,
        request: Any,
        context: grpc.aio.ServicerContext,
    ) -> Any:
        state = current_call()
        raw = metadata_value(context.invocation_metadata(), IDEMPOTENCY_KEY)
        if not raw:
            raise invalid_argument(
                "idempotency_key",
                "money calls need an idempotency key (metadata idempotency-key, header Idempotency-Key)",
                reason="IDEMPOTENCY_KEY_REQUIRED",
            )
        principal = state.principal
        if principal is None:
            raise RpcFailure.build(
                grpc.StatusCode.UNAUTHENTICATED, "not authenticated", reason="UNAUTHENTICATED"
            )
        key = IdempotencyKey.create(raw, scope=principal.subject, operation=method)
        scope = f"{principal.subject}{method}"
        fingerprint = self.fingerprint(request)
        claimed = method in self.claimed_by_use_case
        if claimed or method in self.answered_by_use_case:
            # The use case judges the key in its own read. Answered: it claims and answers it
            # alone. Claimed: it claims it with its intent and answers with its answer, and _run
            # stores what the call ends in otherwise.
            state.idempotency_key_hash = key.hash_hex
            state.idempotency_scope, state.idempotency_fingerprint = scope, fingerprint
            try:
                if not claimed:
                    return await inner(request, context)
                state.idempotency_claimed = False
                return await self._run(
                    method, inner, serializer, request, context, scope, key.hash_hex, fingerprint
                )
            except StoredAnswer as stored:
                return self._replay(stored.response_code, stored.response_body, context)
            except IdempotencyKeyReused:
                raise _reused() from None
            except IdempotencyKeyInFlight:
                raise _in_flight() from None
        claim = await self._store.claim(scope=scope, key_hash=key.hash_hex, fingerprint=fingerprint)

        if claim.outcome is ClaimOutcome.MISMATCH:
            raise _reused()
        if claim.outcome is ClaimOutcome.IN_FLIGHT:
            raise _in_flight()
        if claim.outcome is ClaimOutcome.REPLAY:
            return self._replay(claim.response_code, claim.response_body, context)

        # CLAIMED: this call owns the key.
        state.idempotency_key_hash = key.hash_hex
        state.idempotency_claimed = True
        return await self._run(method, inner, serializer, request, context, scope, key.hash_hex, fingerprint)

    async def _run(
        self,
        method: str,
        inner: Behavior,
        serializer: Any,
        request: Any,
        context: grpc.aio.ServicerContext,
        scope: str,
        key_hash: str,
        fingerprint: str,
    ) -> Any:
        """The call under a claim (the interceptor's, or one its use case may commit with its intent:
        `current_call().idempotency_claimed` says whether there is one), then its answer stored."""
        state = current_call()
        try:
            response = await inner(request, context)
        except (StoredAnswer, IdempotencyKeyReused, IdempotencyKeyInFlight):
            raise  # the use case's own judgement of the key: nothing of this call's is under it
        except asyncio.CancelledError:
            if state.idempotency_claimed:
                await asyncio.shield(self._release(scope, key_hash, fingerprint))
            raise
        except grpc.aio.AbortError:
            # The servicer aborted by itself: its status is not ours to store.
            if state.idempotency_claimed:
                await self._release(scope, key_hash, fingerprint)
            raise
        except Exception as exc:
            failure = to_failure(
                exc, request_id=state.request_id, field_aliases=self.field_aliases.get(method)
            )
            if failure.code is grpc.StatusCode.INTERNAL and not isinstance(exc, RpcFailure):
                log.error(
                    "rpc.internal_error",
                    method=method,
                    request_id=state.request_id,
                    error_type=type(exc).__name__,
                    exc_info=exc,
                )
            # A refusal of the caller (its session ended) is about no request: nothing is kept.
            if (
                failure.code in RETRYABLE_CODES
                or failure.code is grpc.StatusCode.UNAUTHENTICATED
                or not await self._executed(method, key_hash)
            ):
                if state.idempotency_claimed:
                    await self._release(scope, key_hash, fingerprint)
            else:
                await self._complete(
                    scope, key_hash, fingerprint, failure.code.value[0], failure.status, None
                )
            raise failure from None
        if isinstance(response, bytes):
            return response  # the use case stored these bytes with its answer
        body = _passthrough(serializer)(response)
        await self._complete(scope, key_hash, fingerprint, OK_CODE, body, _transaction_id_of(response))
        return body

    @staticmethod
    def _replay(code: int | None, body: bytes | None, context: grpc.aio.ServicerContext) -> bytes:
        """The stored answer, as it was sent the first time."""
        current_call().replayed = True
        if code == OK_CODE:
            context.set_trailing_metadata(((REPLAYED_KEY, "true"),))
            return body or b""
        raise RpcFailure.from_status_bytes(body or b"", ((REPLAYED_KEY, "true"),))

    async def _executed(self, method: str, key_hash: str) -> bool:
        """Whether a call that ended in a definitive error changed something (see the contract)."""
        if method not in self.creates_transaction_under_key:
            return True
        try:
            return await transaction_exists_under_key(self._engine, key_hash)
        except Exception as exc:  # unsure: keep the answer, as for any other method
            log.warning("idempotency.execution_check_failed", error_type=type(exc).__name__)
            return True

    async def _complete(
        self,
        scope: str,
        key_hash: str,
        fingerprint: str,
        code: int,
        body: bytes,
        transaction_id: uuid.UUID | None,
    ) -> None:
        """The answer over this call's claim or, when none was taken, under the key as a new record."""
        claimed = current_call().idempotency_claimed
        try:
            async with self._engine.begin() as connection:
                if claimed:
                    await complete(
                        connection,
                        scope=scope,
                        key_hash=key_hash,
                        response_code=code,
                        response_body=body,
                        now=self._clock.now(),
                        transaction_id=transaction_id,
                    )
                else:
                    await store_answer(
                        connection,
                        scope=scope,
                        key_hash=key_hash,
                        fingerprint=fingerprint,
                        response_code=code,
                        response_body=body,
                        now=self._clock.now(),
                        transaction_id=transaction_id,
                    )
        except LookupError:
            # Our lease ran out and a retry took the key over (or another request holds it): that
            # one stores its own answer.
            log.warning("idempotency.claim_lost", response_code=code)

    async def _release(self, scope: str, key_hash: str, fingerprint: str) -> None:
        try:
            await release_claim(self._engine, scope=scope, key_hash=key_hash, fingerprint=fingerprint)
        except Exception as exc:  # the lease expires by itself; never hide the call's own error
            log.warning("idempotency.release_failed", error_type=type(exc).__name__)
