"""PaymentsApplication: the use cases behind PaymentsService (InitiateDeposit, ...).

Initiation only stores the Transaction (with its locked quote) and returns: the deposit saga
picks it up from the DepositInitiated event. Two withdrawal steps run inline because the
user is waiting for them: asking Deriv to email the code (InitiateWithdrawal) and the debit
with that code (ConfirmWithdrawal, whose code is never stored). Both follow the saga's rule:
intent committed before the call, answer recorded after, the sweeper resolves the rest.

An amount Deriv would refuse (outside the payment agent's transfer limits) is refused first, before
the compliance policy or anything else can write: the customer has not paid, no code is asked for,
and no Transaction takes the idempotency key, so a corrected request can start afresh.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog

from application.errors import DuplicateIdempotencyKey
from application.identity.ports import KnownUser, UsageQuery
from application.payments.create_once import create_once
from application.payments.errors import (
    CallDeferred,
    CallOutcomeUnknown,
    CallRefused,
    CallUnavailable,
    DerivAccountNotBound,
    DerivBusy,
    NotAwaitingCode,
    PaymentRefused,
    ServiceUnavailable,
    TransactionNotFound,
    VerificationCodeRejected,
)
from application.payments.float_cover import float_code, require_float_cover
from application.payments.ports import DerivWithdrawalGateway, RateSource
from application.payments.requests import RequestKey, RequestUnitOfWork, SessionEnded, judge_stored
from application.payments.saga import PaymentSaga, no_checkpoint
from domain.payments.idempotency import IdempotencyKey
from domain.payments.status import TransactionStatus as S
from domain.payments.status import TransactionType
from domain.payments.transaction import Transaction
from domain.shared.errors import DomainError, InvalidValue
from domain.shared.ids import TransactionId, UserId
from domain.user.phone_number import PhoneNumber
from domain.user.user import User
from domain.wallet.deriv_rules import DerivTransferLimits
from domain.wallet.money import Currency, Money
from domain.wallet.mpesa_rules import require_mpesa_amount

log = structlog.get_logger("penpay.payments")

MAX_PAGE_SIZE = 100


class MoneyMovementPolicy(Protocol):
    """KYC, limits and velocity (application.identity.compliance.CompliancePolicy)."""

    async def check_money_movement(
        self, *, user_id: UserId, amount: Money, client_ip: str | None = None, known: KnownUser | None = None
    ) -> None: ...

    def usage_query(self, amount: Money, now: datetime) -> UsageQuery:
        """The limits' figures, for the caller's one read to fetch (handed back in KnownUser.usage)."""
        ...


@dataclass(frozen=True, slots=True)
class TransactionPage:
    items: list[Transaction]
    next_page_token: str


class PaymentsApplication:
    def __init__(
        self,
        *,
        unit_of_work: Callable[[], RequestUnitOfWork],
        rates: RateSource,
        deriv: DerivWithdrawalGateway,
        saga: PaymentSaga,
        transfer_limits: DerivTransferLimits,
        policy: MoneyMovementPolicy | None = None,
        checkpoint: Callable[[str], None] = no_checkpoint,
        rest_token: Callable[[UserId], Awaitable[str]] | None = None,
    ) -> None:
        self._uow = unit_of_work
        # A new-API (REST) user's usable OAuth token (refreshed when about to expire; raises
        # DerivRebindRequired when it is dead). None: the stored token as it is.
        self._rest_token = rest_token
        self._limits = transfer_limits
        self._rates = rates
        self._deriv = deriv
        self._saga = saga
        self._policy = policy
        self._checkpoint = checkpoint

    # --- initiation -------------------------------------------------------------------------

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
    ) -> Transaction:
        """`key`: the caller's idempotency key, whose answer is read in the one read and written with
        the Transaction (application/payments/requests.py); `session_id`: a session the API left to
        this read to check. Refusals keep the order a caller sees: the session, the key, then the
        request itself."""
        now = self._uow().clock.now()  # the clock only: no unit of work is entered
        # The amount is judged here but refused only after the read, in the order above: what M-Pesa
        # takes, then the USD it buys at the quote against what Deriv accepts. Refused, nothing is
        # written and the customer is never charged.
        refused: DomainError | None = None
        try:
            if amount.currency is not Currency.KES:
                raise InvalidValue("a deposit is paid in KES", field="currency")
            require_mpesa_amount(amount)
            rate = self._rates.lock(base=Currency.KES, quote=Currency.USD, now=now)
            self._limits.check_deposit(amount, rate, at=now)
            payout = rate.convert(amount, at=now).target
        except DomainError as error:
            refused = error
        async with self._uow() as uow:
            read = await uow.requests.read(
                user_id,
                now=now,
                session_id=session_id,
                key=key,
                key_hash=idempotency_key_hash,
                usage=self._policy.usage_query(amount, now) if self._policy is not None else None,
                float_code=float_code(TransactionType.DEPOSIT, Currency.USD),
            )
            if not read.session_open:
                raise SessionEnded("this session has ended; sign in again")
            replace = judge_stored(read, key, now)
            if read.transaction_under_key is not None:
                existing = await uow.transactions.get(read.transaction_under_key)
                if existing is not None:
                    return existing
            if refused is not None:
                raise refused
            # The Deriv agent float must hold the USD now, or the customer would pay for a wait.
            await require_float_cover(uow, TransactionType.DEPOSIT, payout, balance_minor=read.float_balance)
        if self._policy is not None:
            known = KnownUser(read.user, read.deriv_token, read.usage) if read.user is not None else None
            await self._policy.check_money_movement(
                user_id=user_id, amount=amount, client_ip=client_ip, known=known
            )
        user = _bound(read.user)
        assert user.deriv_login_id is not None
        transaction = Transaction.start_deposit(
            user_id=user_id,
            amount=amount,
            idempotency_key=IdempotencyKey(idempotency_key_hash, str(user_id), "deposit"),
            locked_rate=rate,
            phone=PhoneNumber(phone) if phone else user.phone,
            deriv_login_id=user.deriv_login_id,
            now=now,
        )
        return await self._create_answered(transaction, key, replace=replace)

    async def _create_answered(
        self, tx: Transaction, key: RequestKey | None, *, replace: bool
    ) -> Transaction:
        """Store `tx` and, under a key, its answer, in one database transaction. A request that lost
        the race for the key (the unique key hash) answers as a repeat would."""
        async with self._uow() as uow:
            try:
                await uow.transactions.add(tx)
                if key is not None:
                    await uow.requests.record_answer(
                        key, transaction_id=tx.id, body=key.answer(tx), now=uow.clock.now(), replace=replace
                    )
                await uow.commit()
                return tx
            except DuplicateIdempotencyKey:
                pass
        # A fresh unit of work: a new snapshot that sees the winner's committed rows.
        async with self._uow() as uow:
            now = uow.clock.now()
            read = await uow.requests.read(
                tx.user_id, now=now, session_id=None, key=key, key_hash=tx.idempotency_key_hash
            )
            judge_stored(read, key, now)
            winner = (
                await uow.transactions.get(read.transaction_under_key)
                if read.transaction_under_key is not None
                else None
            )
        if winner is None:
            raise DuplicateIdempotencyKey("the idempotency key is taken but its transaction is not visible")
        return winner

    async def initiate_withdrawal(
        self,
        *,
        user_id: UserId,
        amount: Money,
        idempotency_key_hash: str,
        client_ip: str | None = None,
        session_id: str | None = None,
    ) -> Transaction:
        """`session_id`: a session the API left to this use case's one read to check (as a deposit's)."""
        if amount.currency is not Currency.USD:
            raise InvalidValue("a withdrawal is asked in USD", field="currency")
        rate = None
        async with self._uow() as uow:
            now = uow.clock.now()
            read = await uow.requests.read(
                user_id,
                now=now,
                session_id=session_id,
                key=None,  # the API claims a withdrawal's key itself (its answer comes after Deriv's)
                key_hash=idempotency_key_hash,
                usage=self._policy.usage_query(amount, now) if self._policy is not None else None,
                float_code=float_code(TransactionType.WITHDRAWAL, Currency.KES),
            )
            if not read.session_open:
                raise SessionEnded("this session has ended; sign in again")
            existing = (
                await uow.transactions.get(read.transaction_under_key)
                if read.transaction_under_key is not None
                else None
            )
            if existing is not None and existing.status is not S.PENDING:
                return existing
            if existing is None:
                # before anything is written or a code is asked for
                self._limits.check(amount, what="withdrawals")
                # The M-Pesa float must hold the KES now: no code is asked for a payout it cannot make.
                rate = self._rates.lock(base=Currency.USD, quote=Currency.KES, now=now)
                payout = rate.convert_to_whole_units(amount, at=now).target
                await require_float_cover(
                    uow, TransactionType.WITHDRAWAL, payout, balance_minor=read.float_balance
                )
        if existing is None and self._policy is not None:
            known = KnownUser(read.user, read.deriv_token, read.usage) if read.user is not None else None
            await self._policy.check_money_movement(
                user_id=user_id, amount=amount, client_ip=client_ip, known=known
            )
        user = _bound(read.user)
        token = await self._usable_token(user, read.deriv_token)
        if existing is not None:
            # The same request again while its code was never sent (Deriv was not answering, or held
            # the request back): ask again. A new code cancels an earlier one that may have gone out.
            return await self._request_withdrawal_code(existing, token)
        assert rate is not None  # locked above, for this new withdrawal
        created = await create_once(
            self._uow,
            user_id=user_id,
            key_hash=idempotency_key_hash,
            looked=True,
            build=lambda: Transaction.start_withdrawal(
                user_id=user_id,
                amount=amount,
                idempotency_key=IdempotencyKey(idempotency_key_hash, str(user_id), "withdrawal"),
                locked_rate=rate,
                phone=user.phone,
                deriv_login_id=user.deriv_login_id,  # type: ignore[arg-type]
                now=now,
            ),
        )
        if not created.created and created.transaction.status is not S.PENDING:
            return created.transaction
        return await self._request_withdrawal_code(created.transaction, token)

    async def _request_withdrawal_code(self, tx: Transaction, token: str) -> Transaction:
        """Ask Deriv to email the code of the PENDING withdrawal `tx`; AWAITING_WITHDRAWAL_CODE after."""
        self._checkpoint("withdrawal.code.before_call")
        try:
            await self._deriv.request_withdrawal_code(
                client_token=token, amount=tx.amount, account=tx.deriv_login_id
            )
        except CallRefused as refused:
            reason = f"Deriv refused to send the verification code: {refused.reason}"
            await self._change(tx.id, lambda t, now: t.fail(reason, now=now), S.PENDING)
            raise PaymentRefused(reason) from None
        except CallDeferred as deferred:
            raise DerivBusy.held_back(deferred, "the code request", "send the same request again") from None
        except (CallUnavailable, CallOutcomeUnknown) as lost:
            # PENDING stays: the same request again asks again; else the sweeper fails it (no money
            # can move without a code).
            raise ServiceUnavailable(f"Deriv is not answering: {lost.reason}") from None
        return await self._change(tx.id, lambda t, now: t.withdrawal_code_sent(now=now), S.PENDING)

    async def confirm_withdrawal(
        self, *, user_id: UserId, transaction_id: TransactionId, verification_code: str
    ) -> Transaction:
        code = (verification_code or "").strip()
        if not code or len(code) > 64:
            raise InvalidValue("verification_code is required", field="verification_code")
        # Before the lock: a REST token may need a refresh (a call to Deriv's OAuth server).
        token = await self._client_token(user_id)
        async with self._uow() as uow:
            tx = await uow.transactions.get_for_update(transaction_id)
            if tx is None or tx.user_id != user_id or tx.type.value != "WITHDRAWAL":
                raise TransactionNotFound("no such withdrawal", field="transaction_id")
            if tx.status is not S.AWAITING_WITHDRAWAL_CODE or tx.deriv_withdrawal_may_have_gone():
                if tx.status is S.PENDING:
                    raise NotAwaitingCode("the verification code has not been sent yet")
                if tx.deriv_withdrawal_may_have_gone():
                    return tx  # confirmed before: the saga carries on from here
                raise NotAwaitingCode(f"the withdrawal is {tx.status.value}, not waiting for a code")
            tx.deriv_withdrawal_requested(now=uow.clock.now())
            await uow.transactions.save(tx)
            await uow.commit()
        self._checkpoint("withdrawal.debit.before_call")
        try:
            receipt = await self._deriv.withdraw(
                withdrawal_id=str(tx.id),
                client_token=token,
                verification_code=code,
                amount=tx.amount,
                account=tx.deriv_login_id,
            )
        except CallRefused as refused:
            reason = f"Deriv refused the withdrawal: {refused.reason}"
            await self._change(tx.id, lambda t, now: t.fail(reason, now=now), S.AWAITING_WITHDRAWAL_CODE)
            raise VerificationCodeRejected(reason, field="verification_code") from None
        except CallDeferred as deferred:
            # Held back before it reached Deriv: the code is unused, so the user confirms again with
            # it. (A plain CallUnavailable may follow a frame that left: that one stays requested.)
            await self._change(
                tx.id, lambda t, now: t.deriv_withdrawal_not_sent(now=now), S.AWAITING_WITHDRAWAL_CODE
            )
            raise DerivBusy.held_back(deferred, "the withdrawal", "confirm with the same code") from None
        except (CallUnavailable, CallOutcomeUnknown) as lost:
            log.warning("withdrawal.debit_unresolved", transaction_id=str(tx.id), error=lost.reason)
            if isinstance(lost, CallOutcomeUnknown):
                note = f"Deriv withdrawal: {lost.reason}"
                await self._change(
                    tx.id, lambda t, now: t.mark_outcome_unknown(note, now=now), S.AWAITING_WITHDRAWAL_CODE
                )
            return await self._get(tx.id)  # the sweeper resolves it without the code
        self._checkpoint("withdrawal.debit.after_call")
        await self._saga.record_deriv_withdrawal(tx.id, receipt.deriv_transaction_id)
        return await self._get(tx.id)

    def use_rest_tokens(self, rest_token: Callable[[UserId], Awaitable[str]]) -> None:
        """Take REST users' tokens from here (wired after construction where the identity service
        holding the binding is built later, as in `penpay up`)."""
        self._rest_token = rest_token

    async def _client_token(self, user_id: UserId) -> str:
        """The user's Deriv token for their side of a withdrawal (v3 API token or REST OAuth token)."""
        async with self._uow() as uow:
            user = await uow.users.get(user_id)
            token = await uow.users.load_deriv_token(user_id)
        return await self._usable_token(user, token)

    async def _usable_token(self, user: User | None, token: str | None) -> str:
        """`token` as read with `user`, or a REST user's OAuth token (refreshed when about to expire)."""
        if user is None or user.deriv_login_id is None or not token:
            raise DerivAccountNotBound("bind your Deriv account first", field="deriv_login_id")
        if user.deriv_login_id.is_rest and self._rest_token is not None:
            return await self._rest_token(user.id)
        return token

    # --- reading ----------------------------------------------------------------------------

    async def get_transaction(self, *, user_id: UserId, transaction_id: TransactionId) -> Transaction:
        async with self._uow() as uow:
            tx = await uow.transactions.get(transaction_id)
        if tx is None or tx.user_id != user_id:
            raise TransactionNotFound("no such transaction", field="transaction_id")
        return tx

    async def list_transactions(
        self, *, user_id: UserId, page_size: int, page_token: str | None
    ) -> TransactionPage:
        size = min(max(page_size or 20, 1), MAX_PAGE_SIZE)
        before = _decode_token(page_token) if page_token else None
        async with self._uow() as uow:
            items = await uow.transactions.list_for_user(user_id, limit=size + 1, before=before)
        more = len(items) > size
        items = items[:size]
        token = _encode_token(items[-1].id) if more and items else ""
        return TransactionPage(items, token)

    # --- helpers ----------------------------------------------------------------------------

    async def _get(self, tx_id: TransactionId) -> Transaction:
        async with self._uow() as uow:
            tx = await uow.transactions.get(tx_id)
        assert tx is not None
        return tx

    async def _change(
        self, tx_id: TransactionId, change: Callable[[Transaction, datetime], None], expected: S
    ) -> Transaction:
        async with self._uow() as uow:
            tx = await uow.transactions.get_for_update(tx_id)
            assert tx is not None
            if tx.status is expected:
                change(tx, uow.clock.now())
                await uow.transactions.save(tx)
                await uow.commit()
        return tx


def _bound(user: User | None) -> User:
    """The user, who must exist and have a Deriv account bound."""
    if user is None:
        raise TransactionNotFound("no such user", field="user_id")
    if user.deriv_login_id is None:
        raise DerivAccountNotBound("bind your Deriv account first", field="deriv_login_id")
    return user


def _encode_token(tx_id: TransactionId) -> str:
    return base64.urlsafe_b64encode(tx_id.value.bytes).decode().rstrip("=")


def _decode_token(token: str) -> TransactionId:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return TransactionId(uuid.UUID(bytes=raw))
    except (ValueError, TypeError):
        raise InvalidValue("page_token is not valid", field="page_token") from None
