"""The soak's API client: money RPCs over gRPC as a careful client makes them.

Every money call carries an Idempotency-Key; when the answer is lost (the API process killed,
the database or Redis away: UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, INTERNAL, UNKNOWN) or
the call is throttled (RESOURCE_EXHAUSTED), it is retried with the SAME key and the same
request after a backoff, until an answer comes or `give_up_after` passes. Any other status is
the API's final word (a refusal), recorded as such.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import grpc

from proving.chaos.population import AccessTokens, SoakUser

RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


@dataclass(frozen=True, slots=True)
class Answer:
    ok: bool
    code: str  # "OK" or the final gRPC status name
    message: str = ""
    transaction_id: str | None = None
    status: str | None = None
    attempts: int = 1


class ApiClient:
    def __init__(
        self, address: str, tokens: AccessTokens, *, call_timeout: float = 15.0, give_up_after: float = 120.0
    ) -> None:
        from penpay.payments.v1 import payments_pb2_grpc

        self._channel = grpc.aio.insecure_channel(address)
        self._stub = payments_pb2_grpc.PaymentsServiceStub(self._channel)
        self._tokens = tokens
        self._call_timeout = call_timeout
        self._give_up_after = give_up_after
        self.retries: Counter[str] = Counter()

    async def close(self) -> None:
        await self._channel.close()

    def _metadata(self, user: SoakUser, key: str) -> tuple[tuple[str, str], ...]:
        return (
            ("authorization", f"Bearer {self._tokens.for_user(user)}"),
            ("idempotency-key", key),
            ("x-forwarded-for", user.plan.client_ip),
        )

    async def _call(self, method: Any, request: Any, user: SoakUser, key: str) -> Answer:
        deadline = time.monotonic() + self._give_up_after
        attempt, backoff = 0, 0.2
        while True:
            attempt += 1
            try:
                reply = await method(request, metadata=self._metadata(user, key), timeout=self._call_timeout)
            except grpc.aio.AioRpcError as error:
                code = error.code()
                if code in RETRYABLE and time.monotonic() < deadline:
                    self.retries[code.name] += 1
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 3.0)
                    continue
                return Answer(False, code.name, error.details() or "", attempts=attempt)
            tx = reply.transaction
            return Answer(True, "OK", "", tx.transaction_id, tx.status, attempt)

    async def deposit(self, user: SoakUser, amount_cents: int) -> Answer:
        from penpay.payments.v1 import payments_pb2

        request = payments_pb2.InitiateDepositRequest(amount_cents=amount_cents, currency="KES")
        return await self._call(self._stub.InitiateDeposit, request, user, str(uuid.uuid4()))

    async def withdrawal(self, user: SoakUser, amount_cents: int) -> Answer:
        from penpay.payments.v1 import payments_pb2

        request = payments_pb2.InitiateWithdrawalRequest(amount_cents=amount_cents, currency="USD")
        return await self._call(self._stub.InitiateWithdrawal, request, user, str(uuid.uuid4()))

    async def confirm(self, user: SoakUser, transaction_id: str, code: str) -> Answer:
        from penpay.payments.v1 import payments_pb2

        request = payments_pb2.ConfirmWithdrawalRequest(transaction_id=transaction_id, verification_code=code)
        return await self._call(self._stub.ConfirmWithdrawal, request, user, str(uuid.uuid4()))

    async def paybill_reference(self, user: SoakUser) -> str | None:
        """The user's deposit reference (GetPaybillDetails, as the user); None when it is not had."""
        from penpay.payments.v1 import payments_pb2

        for attempt in range(5):
            try:
                reply = await self._stub.GetPaybillDetails(
                    payments_pb2.GetPaybillDetailsRequest(),
                    metadata=self._metadata(user, str(uuid.uuid4())),
                    timeout=self._call_timeout,
                )
                return str(reply.account_number)
            except grpc.aio.AioRpcError as error:
                if error.code() not in RETRYABLE or attempt == 4:
                    return None
                await asyncio.sleep(0.5 * (attempt + 1))
        return None
