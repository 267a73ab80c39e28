"""penpay.payments.v1.PaymentsService over the DepositOrchestrator, the WithdrawalOrchestrator and the
TransactionQueries (application/payments/deposits.py, withdrawals.py, queries.py).

The three money RPCs run behind the idempotency interceptor, which hands over the hash of the
caller's idempotency key (the application stores it on the Transaction, unique).
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Protocol

import grpc

from application.payments.requests import RequestKey
from domain.payments.status import TransactionType
from domain.payments.transaction import Transaction
from domain.shared.ids import TransactionId, UserId
from domain.wallet.locked_rate import LockedRate
from domain.wallet.money import Currency, Money
from penpay.payments.v1 import payments_pb2 as pb
from penpay.payments.v1 import payments_pb2_grpc as pb_grpc
from penpay_api.context import current_call
from penpay_api.errors import RpcFailure
from penpay_api.services._common import caller_id, client_ip, money, timestamp

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PaymentsService"].full_name
MONEY_METHODS = frozenset(
    f"/{SERVICE_NAME}/{name}" for name in ("InitiateDeposit", "InitiateWithdrawal", "ConfirmWithdrawal")
)
# The money methods whose use case stores a new Transaction under the call's key hash
# (transactions.idempotency_key_hash, create_once): only for them does "no Transaction under the
# key" prove that a refused call changed nothing, and frees the key (penpay_api/idempotency.py).
# Left out, a method keeps every refusal (the safe side: a key burnt, never an effect redone).
CREATES_TRANSACTION_UNDER_KEY = frozenset(
    f"/{SERVICE_NAME}/{name}" for name in ("InitiateDeposit", "InitiateWithdrawal")
)
# The money methods whose use case checks the caller's session and reads and writes the key's record
# in its own one read and create transaction (application/payments/requests.py).
ANSWERED_BY_USE_CASE = frozenset({f"/{SERVICE_NAME}/InitiateDeposit"})
# The money methods whose answer comes after a call out: their use case reads the key's record in its
# first read, claims the key with its intent and completes it with its answer (requests.py).
CLAIMED_BY_USE_CASE = frozenset(
    f"/{SERVICE_NAME}/{name}" for name in ("InitiateWithdrawal", "ConfirmWithdrawal")
)
# The methods whose use case checks the caller's session in its one read of the user.
SESSIONS_CHECKED_BY_USE_CASE = frozenset(
    f"/{SERVICE_NAME}/{name}" for name in ("InitiateDeposit", "InitiateWithdrawal", "ConfirmWithdrawal")
)
FIELD_ALIASES = {f"/{SERVICE_NAME}/ConfirmWithdrawal": {"code": "verification_code"}}
_TYPES = {
    TransactionType.DEPOSIT: pb.TRANSACTION_TYPE_DEPOSIT,
    TransactionType.WITHDRAWAL: pb.TRANSACTION_TYPE_WITHDRAWAL,
}


class TransactionPage(Protocol):
    @property
    def items(self) -> list[Transaction]: ...
    @property
    def next_page_token(self) -> str | None: ...


class DepositOrchestrator(Protocol):
    """application.payments.deposits.DepositOrchestrator, as the servicer uses it."""

    async def initiate_deposit(
        self,
        *,
        user_id: UserId,
        amount: Money,
        phone: str | None,
        idempotency_key_hash: str,
        client_ip: str | None = None,
        key: RequestKey | None = None,
        session_id: str | None = None,
    ) -> Transaction: ...


class WithdrawalOrchestrator(Protocol):
    """application.payments.withdrawals.WithdrawalOrchestrator, as the servicer uses it."""

    async def initiate_withdrawal(
        self,
        *,
        user_id: UserId,
        amount: Money,
        idempotency_key_hash: str,
        client_ip: str | None = None,
        session_id: str | None = None,
        key: RequestKey | None = None,
    ) -> Transaction: ...

    async def confirm_withdrawal(
        self,
        *,
        user_id: UserId,
        transaction_id: TransactionId,
        verification_code: str,
        key: RequestKey | None = None,
        session_id: str | None = None,
    ) -> Transaction: ...


class TransactionQueries(Protocol):
    """application.payments.queries.TransactionQueries, as the servicer uses it."""

    async def get_transaction(self, *, user_id: UserId, transaction_id: TransactionId) -> Transaction: ...

    async def list_transactions(
        self, *, user_id: UserId, page_size: int, page_token: str | None
    ) -> TransactionPage: ...


class PaybillReferences(Protocol):
    """application.payments.paybill.PaybillDeposits, as the servicer uses it."""

    @property
    def shortcode(self) -> str: ...

    async def reference_for(self, user_id: UserId) -> str: ...


def rate_text(rate: Fraction) -> str:
    """An exact decimal when the rate has one (a denominator of only 2s and 5s), else "p/q"."""
    rest, twos, fives = rate.denominator, 0, 0
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    if rest != 1:
        return f"{rate.numerator}/{rate.denominator}"
    digits = max(twos, fives)
    scaled = rate.numerator * 10**digits // rate.denominator  # exact: 10**digits is a multiple
    if digits == 0:
        return str(scaled)
    sign, text = ("-" if scaled < 0 else ""), str(abs(scaled)).rjust(digits + 1, "0")
    return f"{sign}{text[:-digits]}.{text[-digits:]}"


def kes_per_usd_text(rate: LockedRate | None) -> str:
    """The locked rate as the price of a dollar in shillings, whichever way the money went."""
    if rate is None:
        return ""
    price = rate.rate if rate.base is Currency.USD else 1 / rate.rate
    return rate_text(price)


def transaction_pb(tx: Transaction) -> pb.Transaction:
    return pb.Transaction(
        transaction_id=str(tx.id),
        user_id=str(tx.user_id),
        type=_TYPES[tx.type],
        status=tx.status.value.lower(),
        amount=money(tx.amount),
        converted_amount=money(tx.converted_amount),
        rate=rate_text(tx.locked_rate.rate) if tx.locked_rate is not None else "",
        kes_per_usd=kes_per_usd_text(tx.locked_rate),
        deriv_login_id=tx.deriv_login_id.value,
        failure_reason=tx.failure_reason or "",
        created_at=timestamp(tx.created_at),
        updated_at=timestamp(tx.updated_at),
    )


def _key_hash() -> str:
    key_hash = current_call().idempotency_key_hash
    if key_hash is None:  # the idempotency interceptor is not installed on this method
        raise RpcFailure.build(
            grpc.StatusCode.INTERNAL, "internal error", reason="IDEMPOTENCY_NOT_CONFIGURED"
        )
    return key_hash


def _claimed_key(answer: Callable[[Transaction], bytes]) -> RequestKey | None:
    """The call's key for a use case that claims it with its intent (CLAIMED_BY_USE_CASE); None when
    the interceptor claimed it itself (then it also completes it)."""
    call = current_call()
    if call.idempotency_claimed or call.idempotency_scope is None or call.idempotency_fingerprint is None:
        return None

    def claimed() -> None:
        call.idempotency_claimed = True

    return RequestKey(call.idempotency_scope, _key_hash(), call.idempotency_fingerprint, answer, claimed)


class PaymentsServicer(pb_grpc.PaymentsServiceServicer):
    def __init__(
        self,
        *,
        deposits: DepositOrchestrator,
        withdrawals: WithdrawalOrchestrator,
        transactions: TransactionQueries,
        paybill: PaybillReferences | None = None,
    ) -> None:
        self._deposits = deposits
        self._withdrawals = withdrawals
        self._transactions = transactions
        self._paybill = paybill

    async def InitiateDeposit(
        self, request: pb.InitiateDepositRequest, context: grpc.aio.ServicerContext
    ) -> pb.InitiateDepositResponse | bytes:  # bytes: as stored, sent as they are (idempotency)
        call = current_call()
        key_hash = _key_hash()
        if call.idempotency_scope is None or call.idempotency_fingerprint is None:
            raise RpcFailure.build(
                grpc.StatusCode.INTERNAL, "internal error", reason="IDEMPOTENCY_NOT_CONFIGURED"
            )
        answered: dict[TransactionId, bytes] = {}

        def answer(tx: Transaction) -> bytes:
            body: bytes = pb.InitiateDepositResponse(transaction=transaction_pb(tx)).SerializeToString()
            answered[tx.id] = body
            return body

        tx = await self._deposits.initiate_deposit(
            user_id=caller_id(),
            amount=Money(request.amount_cents, Currency.parse(request.currency)),
            phone=request.phone_number or None,
            idempotency_key_hash=key_hash,
            client_ip=client_ip(),
            key=RequestKey(call.idempotency_scope, key_hash, call.idempotency_fingerprint, answer),
            session_id=call.session_to_check,
        )
        # The bytes stored for a repeat, when this call stored them (the same bytes as re-encoding).
        return answered.get(tx.id) or pb.InitiateDepositResponse(transaction=transaction_pb(tx))

    async def InitiateWithdrawal(
        self, request: pb.InitiateWithdrawalRequest, context: grpc.aio.ServicerContext
    ) -> pb.InitiateWithdrawalResponse | bytes:  # bytes: as stored with the answer (idempotency)
        answered: dict[TransactionId, bytes] = {}

        def answer(tx: Transaction) -> bytes:
            body: bytes = pb.InitiateWithdrawalResponse(
                transaction=transaction_pb(tx), quoted_payout=money(tx.converted_amount)
            ).SerializeToString()
            answered[tx.id] = body
            return body

        tx = await self._withdrawals.initiate_withdrawal(
            user_id=caller_id(),
            amount=Money(request.amount_cents, Currency.parse(request.currency)),
            idempotency_key_hash=_key_hash(),
            client_ip=client_ip(),
            session_id=current_call().session_to_check,
            key=_claimed_key(answer),
        )
        return answered.get(tx.id) or pb.InitiateWithdrawalResponse(
            transaction=transaction_pb(tx), quoted_payout=money(tx.converted_amount)
        )

    async def ConfirmWithdrawal(
        self, request: pb.ConfirmWithdrawalRequest, context: grpc.aio.ServicerContext
    ) -> pb.ConfirmWithdrawalResponse | bytes:  # bytes: as stored with the answer (idempotency)
        user_id = caller_id()
        _key_hash()
        answered: dict[TransactionId, bytes] = {}

        def answer(tx: Transaction) -> bytes:
            body: bytes = pb.ConfirmWithdrawalResponse(transaction=transaction_pb(tx)).SerializeToString()
            answered[tx.id] = body
            return body

        tx = await self._withdrawals.confirm_withdrawal(
            user_id=user_id,
            transaction_id=TransactionId.from_str(request.transaction_id, field="transaction_id"),
            verification_code=request.verification_code,
            key=_claimed_key(answer),
            session_id=current_call().session_to_check,
        )
        return answered.get(tx.id) or pb.ConfirmWithdrawalResponse(transaction=transaction_pb(tx))

    async def GetTransaction(
        self, request: pb.GetTransactionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTransactionResponse:
        tx = await self._transactions.get_transaction(
            user_id=caller_id(),
            transaction_id=TransactionId.from_str(request.transaction_id, field="transaction_id"),
        )
        return pb.GetTransactionResponse(transaction=transaction_pb(tx))

    async def ListTransactions(
        self, request: pb.ListTransactionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTransactionsResponse:
        page = await self._transactions.list_transactions(
            user_id=caller_id(), page_size=request.page_size, page_token=request.page_token or None
        )
        return pb.ListTransactionsResponse(
            transactions=[transaction_pb(tx) for tx in page.items], next_page_token=page.next_page_token or ""
        )

    async def GetPaybillDetails(
        self, request: pb.GetPaybillDetailsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPaybillDetailsResponse:
        if self._paybill is None:
            raise RpcFailure.build(
                grpc.StatusCode.UNIMPLEMENTED, "paybill deposits are not offered here", reason="NO_PAYBILL"
            )
        reference = await self._paybill.reference_for(caller_id())
        return pb.GetPaybillDetailsResponse(business_number=self._paybill.shortcode, account_number=reference)
