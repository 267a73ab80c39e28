"""DerivDepositGateway and DerivWithdrawalGateway over the gateway's gRPC API (the sagas' Deriv calls).

Every gRPC failure is classified for the saga (application.payments.errors):
- refused for good: INVALID_ARGUMENT, FAILED_PRECONDITION, PERMISSION_DENIED, UNAUTHENTICATED,
  ALREADY_EXISTS (the id was used for another operation), NOT_FOUND;
- never executed (resolve-only lookups): FAILED_PRECONDITION with ErrorInfo reason NOT_EXECUTED;
- outcome unknown: DEADLINE_EXCEEDED, UNAVAILABLE carrying ErrorInfo outcome=unknown, a
  transport failure after the request may have left;
- deferred (held back by a rate limit before it was sent; not an attempt): RESOURCE_EXHAUSTED, after
  its RetryInfo delay;
- unavailable (retry later, same id): everything else (UNAVAILABLE, ...).
The user's token and verification code travel in the request body only; they are never logged.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from application.payments.errors import (
    CallDeferred,
    CallOutcomeUnknown,
    CallRefused,
    CallUnavailable,
    NotExecuted,
)
from application.payments.ports import DerivReceipt
from application.review.ports import StatementLine
from deriv_gateway.grpc_errors import GATEWAY_DOMAIN, parse_details
from domain.user.deriv_login_id import DerivLoginId
from domain.wallet.money import Currency, Money
from penpay.common.v1 import money_pb2
from penpay.deriv.v1 import deriv_gateway_pb2 as pb
from penpay.deriv.v1 import deriv_gateway_pb2_grpc as pb_grpc

T = TypeVar("T", bound=Message)

_REFUSED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.NOT_FOUND,
    }
)


def _money(amount: Money) -> money_pb2.Money:
    return money_pb2.Money(amount_cents=amount.amount_minor, currency=amount.currency.value)


# Deriv's RateLimit says nothing of when to come back; the gateway's own limiter does.
DEFAULT_RETRY_AFTER = 60.0
# grpc's words for a call that found no connection to send on (the gateway is down or failing
# over): the request never left this process. Not "Socket closed" and the like, which can follow
# a request the gateway received, and may have acted on.
_NEVER_SENT = ("failed to connect to all addresses", "connections to all backends failing")
UNREACHABLE_RETRY_AFTER = 2.0


def _detail(error: grpc.aio.AioRpcError, kind: type[T]) -> T | None:
    status = parse_details(error.trailing_metadata())
    if status is None:
        return None
    for detail in status.details:
        found: T = kind()
        if detail.Unpack(found):
            return found
    return None


def _retry_after(error: grpc.aio.AioRpcError, default: float | None = DEFAULT_RETRY_AFTER) -> float | None:
    info = _detail(error, error_details_pb2.RetryInfo)
    if info is None or not info.HasField("retry_delay"):
        return default
    delay: float = info.retry_delay.ToTimedelta().total_seconds()
    return max(0.0, delay)


def classify(error: grpc.aio.AioRpcError) -> Exception:
    code = error.code()
    info = _detail(error, error_details_pb2.ErrorInfo)
    reason = info.reason if info is not None else code.name
    text = f"{reason}: {error.details() or ''}".strip()
    # Only the gateway's own NOT_EXECUTED proves the *operation* never executed. Deriv's
    # "not executed" errors (RateLimit, NotLeader of a standby, a refused statement call) say so of
    # the call that carried them, nothing of the operation: those are retried, never taken as proof.
    if info is not None and info.reason == "NOT_EXECUTED" and info.domain == GATEWAY_DOMAIN:
        return NotExecuted(text, code=reason)
    if code in _REFUSED:
        return CallRefused(text, code=reason)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED or (
        info is not None and info.metadata.get("outcome") == "unknown"
    ):
        return CallOutcomeUnknown(text, code=reason, retry_after=_retry_after(error, None))
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return CallDeferred(text, retry_after=_retry_after(error) or 0.0, code=reason)
    if code is grpc.StatusCode.UNAVAILABLE and info is None and _never_sent(error):
        # nothing was asked, so nothing moved: a wait (a failover takes seconds), not an attempt
        return CallDeferred(text, retry_after=UNREACHABLE_RETRY_AFTER, code="GATEWAY_UNREACHABLE")
    return CallUnavailable(text, code=reason)


def _never_sent(error: grpc.aio.AioRpcError) -> bool:
    details = error.details() or ""
    return any(words in details for words in _NEVER_SENT)


class GatewayDerivPayments:
    """Both Deriv gateway ports (application.payments.ports), over one channel."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 30.0) -> None:
        self._stub = pb_grpc.DerivGatewayServiceStub(channel)
        self._timeout = timeout

    async def transfer(self, *, transfer_id: str, loginid: DerivLoginId, amount: Money) -> DerivReceipt:
        if loginid.is_rest:  # a new-API account: the REST transport, addressed by nickname
            request = pb.TransferRequest(
                transfer_id=transfer_id,
                client_nickname=loginid.nickname,
                amount=_money(amount),
                api=pb.DERIV_API_REST,
            )
        else:
            request = pb.TransferRequest(
                transfer_id=transfer_id, client_loginid=loginid.value, amount=_money(amount)
            )
        try:
            reply = await self._stub.Transfer(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise classify(error) from None
        return DerivReceipt(reply.transfer_id, reply.deriv_transaction_id)

    async def request_withdrawal_code(
        self, *, client_token: str, amount: Money, account: DerivLoginId | None = None
    ) -> None:
        request = pb.RequestWithdrawalCodeRequest(client_token=client_token, amount=_money(amount))
        if account is not None and account.is_rest:
            request.api = pb.DERIV_API_REST
        try:
            await self._stub.RequestWithdrawalCode(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise classify(error) from None

    async def withdraw(
        self,
        *,
        withdrawal_id: str,
        client_token: str,
        verification_code: str,
        amount: Money,
        resolve_only: bool = False,
        account: DerivLoginId | None = None,
    ) -> DerivReceipt:
        request = pb.WithdrawRequest(
            withdrawal_id=withdrawal_id,
            client_token=client_token,
            verification_code=verification_code,
            amount=_money(amount),
        )
        if account is not None and account.is_rest:
            # the REST transport; an empty client_token with resolve_only looks on the agent's token
            request.api = pb.DERIV_API_REST
            request.client_nickname = account.nickname
        if resolve_only:
            request.resolve_only = True
        try:
            reply = await self._stub.Withdraw(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise classify(error) from None
        return DerivReceipt(reply.withdrawal_id, reply.deriv_transaction_id)


class GatewayDerivStatement:
    """application.review.ports.DerivStatement and DerivLookups over the gateway: read-only."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 30.0) -> None:
        self._stub = pb_grpc.DerivGatewayServiceStub(channel)
        self._timeout = timeout

    async def find_line(self, reference: str, since: datetime) -> StatementLine | None:
        request = pb.FindStatementLineRequest(reference=reference, since_unix=int(since.timestamp()))
        try:
            reply = await self._stub.FindStatementLine(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise classify(error) from None
        if not reply.found:
            return None
        return StatementLine(
            deriv_transaction_id=reply.deriv_transaction_id,
            amount_cents=reply.amount.amount_cents,
            currency=reply.amount.currency,
            from_loginid=reply.from_loginid,
            to_loginid=reply.to_loginid,
        )

    async def transfer_executed(
        self, *, transfer_id: str, loginid: DerivLoginId, amount: Money
    ) -> StatementLine | None:
        """Resolve-only on the REST transport (GET transfer/{request_id}), never a new transfer."""
        request = pb.TransferRequest(
            transfer_id=transfer_id,
            client_nickname=loginid.nickname,
            amount=_money(amount),
            api=pb.DERIV_API_REST,
            resolve_only=True,
        )
        try:
            reply = await self._stub.Transfer(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            failure = classify(error)
            if isinstance(failure, (NotExecuted, CallRefused)):
                return None  # Deriv holds no executed transfer under our request id
            raise failure from None
        return StatementLine(
            deriv_transaction_id=reply.deriv_transaction_id,
            amount_cents=reply.amount.amount_cents,
            currency=reply.amount.currency,
            from_loginid="",
            to_loginid="",  # a REST account is addressed by nickname; the request id names ours
        )

    async def withdrawal_executed(self, *, withdrawal_id: str, amount: Money) -> int | None:
        """Resolve-only: the gateway's journal or Deriv's statement, never a new debit."""
        request = pb.WithdrawRequest(withdrawal_id=withdrawal_id, amount=_money(amount), resolve_only=True)
        try:
            reply = await self._stub.Withdraw(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            failure = classify(error)
            if isinstance(failure, (NotExecuted, CallRefused)):
                return None  # as the saga reads it: the debit did not happen
            raise failure from None
        return int(reply.deriv_transaction_id)


class GatewayDerivBalance:
    """The payment agent's balance at Deriv, read through the gateway (GetBalance; read-only)."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 30.0) -> None:
        self._stub = pb_grpc.DerivGatewayServiceStub(channel)
        self._timeout = timeout

    async def agent_balance(self) -> Money:
        try:
            reply = await self._stub.GetBalance(pb.GetBalanceRequest(), timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise classify(error) from None
        return Money(int(reply.balance.amount_cents), Currency(reply.balance.currency))
