"""WithdrawalOrchestrator: InitiateWithdrawal and ConfirmWithdrawal (PEC 3.1.8, an Orchestrator of
the withdrawal saga).

Two withdrawal steps run here, inline, because the user is waiting for them: asking Deriv to email
the code (InitiateWithdrawal) and the debit with that code (ConfirmWithdrawal, whose code is never
stored). Both follow the saga's rule: intent committed before the call, answer recorded after
(the debit's answer by the saga runner, application/payments/saga.py, which then takes the
withdrawal on through the one transition table); the sweeper resolves the rest.

An amount Deriv would refuse is refused first, before the compliance policy or anything else can
write: no code is asked for, and no Transaction takes the idempotency key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import structlog

from application.errors import DuplicateIdempotencyKey
from application.identity.ports import KnownUser
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
from application.payments.ports import (
    DerivWithdrawalGateway,
    MoneyMovementPolicy,
    PaymentsUnitOfWork,
    RateSource,
)
from application.payments.requests import (
    AnswersRequests,
    IdempotencyKeyInFlight,
    RequestKey,
    RequestUnitOfWork,
    bound_user,
    judge_read,
    read_after_lost_race,
)
from application.payments.saga import SagaRunner, no_checkpoint
from domain.payments.idempotency import IdempotencyKey
from domain.payments.status import TransactionStatus as S
from domain.payments.status import TransactionType
from domain.payments.transaction import Transaction
from domain.shared.errors import ConcurrentModification, InvalidValue
from domain.shared.ids import TransactionId, UserId
from domain.user.user import User
from domain.wallet.deriv_rules import DerivTransferLimits
from domain.wallet.money import Currency, Money

log = structlog.get_logger("penpay.payments")


class WithdrawalOrchestrator:
    def __init__(
        self,
        *,
        unit_of_work: Callable[[], RequestUnitOfWork],
        rates: RateSource,
        deriv: DerivWithdrawalGateway,
        saga: SagaRunner,
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

    async def initiate_withdrawal(
        self,
        *,
        user_id: UserId,
        amount: Money,
        idempotency_key_hash: str,
        client_ip: str | None = None,
        session_id: str | None = None,
        key: RequestKey | None = None,
    ) -> Transaction:
        """`session_id`: a session the API left to this use case's one read to check (as a deposit's).
        `key`: the caller's idempotency key, read in the one read, claimed with the Transaction and
        completed with the code's answer (requests.py); None: the API claims and completes it."""
        if amount.currency is not Currency.USD:
            raise InvalidValue("a withdrawal is asked in USD", field="currency")
        rate = None
        async with self._uow() as uow:
            now = uow.clock.now()
            read = await uow.requests.read(
                user_id,
                now=now,
                session_id=session_id,
                key=key,
                key_hash=idempotency_key_hash,
                usage=self._policy.usage_query(amount, now) if self._policy is not None else None,
                float_code=float_code(TransactionType.WITHDRAWAL, Currency.KES),
            )
            replace = judge_read(read, key, now)
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
        user = bound_user(read.user)
        token = await self._usable_token(user, read.deriv_token)
        if existing is not None:
            # The same request again while its code was never sent (Deriv was not answering, or held
            # the request back): ask again. A new code cancels an earlier one that may have gone out.
            if key is not None:
                async with self._uow() as uow:
                    await uow.requests.claim(key, now=uow.clock.now(), replace=replace)
                    await uow.commit()
                key.claimed()
            return await self._request_withdrawal_code(existing, token, key)
        assert rate is not None  # locked above, for this new withdrawal
        tx = Transaction.start_withdrawal(
            user_id=user_id,
            amount=amount,
            idempotency_key=IdempotencyKey(idempotency_key_hash, str(user_id), "withdrawal"),
            locked_rate=rate,
            phone=user.phone,
            deriv_login_id=user.deriv_login_id,  # type: ignore[arg-type]
            now=now,
        )
        if key is None:
            created = await create_once(
                self._uow, user_id=user_id, key_hash=idempotency_key_hash, looked=True, build=lambda: tx
            )
            if not created.created and created.transaction.status is not S.PENDING:
                return created.transaction
            return await self._request_withdrawal_code(created.transaction, token, None)
        return await self._request_withdrawal_code(await self._create_claimed(tx, key, replace), token, key)

    async def _create_claimed(self, tx: Transaction, key: RequestKey, replace: bool) -> Transaction:
        """Store `tx` (the code request's intent) and the key's claim in one database transaction. A
        request that lost the race for the key answers as a repeat would (the winner's claim: in
        flight; its answer: replayed)."""
        async with self._uow() as uow:
            try:
                await uow.transactions.add(tx)
                await uow.requests.claim(key, now=uow.clock.now(), replace=replace)
                await uow.commit()
                key.claimed()
                return tx
            except DuplicateIdempotencyKey:
                pass
        # A fresh unit of work: a new snapshot that sees the winner's committed rows.
        async with self._uow() as uow:
            await read_after_lost_race(uow, tx, key)
        # The winner's record is gone (released after a failure it may be retrying): it runs.
        raise IdempotencyKeyInFlight("a request with this idempotency key is still being processed")

    async def _request_withdrawal_code(
        self, tx: Transaction, token: str, key: RequestKey | None
    ) -> Transaction:
        """Ask Deriv to email the code of the PENDING withdrawal `tx`; AWAITING_WITHDRAWAL_CODE after
        (committed with the key's answer, under a key claimed with the intent)."""
        self._checkpoint("withdrawal.code.before_call")
        try:
            await self._deriv.request_withdrawal_code(
                client_token=token, amount=tx.amount, account=tx.deriv_login_id
            )
        except CallRefused as refused:
            reason = f"Deriv refused to send the verification code: {refused.reason}"
            await self._change(tx.id, lambda t, now: t.fail(reason, now=now), S.PENDING, known=tx)
            raise PaymentRefused(reason) from None
        except CallDeferred as deferred:
            raise DerivBusy.held_back(deferred, "the code request", "send the same request again") from None
        except (CallUnavailable, CallOutcomeUnknown) as lost:
            # PENDING stays: the same request again asks again; else the sweeper fails it (no money
            # can move without a code).
            raise ServiceUnavailable(f"Deriv is not answering: {lost.reason}") from None
        return await self._change(
            tx.id, lambda t, now: t.withdrawal_code_sent(now=now), S.PENDING, known=tx, key=key
        )

    async def confirm_withdrawal(
        self,
        *,
        user_id: UserId,
        transaction_id: TransactionId,
        verification_code: str,
        key: RequestKey | None = None,
        session_id: str | None = None,
    ) -> Transaction:
        """`key`: the caller's idempotency key, read with the user, claimed with the debit's intent
        and completed with its answer (requests.py); None: the API claims and completes it.
        `session_id`: a session the API left to that read to check."""
        code = (verification_code or "").strip()
        if not code or len(code) > 64:
            raise InvalidValue("verification_code is required", field="verification_code")
        # Before the lock: a REST token may need a refresh (a call to Deriv's OAuth server).
        token, replace = await self._client_token(user_id, key, session_id)
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
            if key is not None:
                await uow.requests.claim(key, now=uow.clock.now(), replace=replace)
            await uow.commit()
        if key is not None:
            key.claimed()
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
            await self._change(
                tx.id, lambda t, now: t.fail(reason, now=now), S.AWAITING_WITHDRAWAL_CODE, known=tx
            )
            raise VerificationCodeRejected(reason, field="verification_code") from None
        except CallDeferred as deferred:
            # Held back before it reached Deriv: the code is unused, so the user confirms again with
            # it. (A plain CallUnavailable may follow a frame that left: that one stays requested.)
            await self._change(
                tx.id,
                lambda t, now: t.deriv_withdrawal_not_sent(now=now),
                S.AWAITING_WITHDRAWAL_CODE,
                known=tx,
            )
            raise DerivBusy.held_back(deferred, "the withdrawal", "confirm with the same code") from None
        except (CallUnavailable, CallOutcomeUnknown) as lost:
            log.warning("withdrawal.debit_unresolved", transaction_id=str(tx.id), error=lost.reason)
            if isinstance(lost, CallOutcomeUnknown):
                note = f"Deriv withdrawal: {lost.reason}"
                return await self._change(
                    tx.id,
                    lambda t, now: t.mark_outcome_unknown(note, now=now),
                    S.AWAITING_WITHDRAWAL_CODE,
                    known=tx,
                )
            return await self._get(tx.id)  # the sweeper resolves it without the code
        self._checkpoint("withdrawal.debit.after_call")
        # From the state just committed (this call owns it), not read again when nothing moved it
        done = await self._saga.record_deriv_withdrawal(
            tx.id, receipt.deriv_transaction_id, known=tx, also=_answered_by(key)
        )
        return done if done is not None else await self._get(tx.id)

    def use_rest_tokens(self, rest_token: Callable[[UserId], Awaitable[str]]) -> None:
        """Take REST users' tokens from here (wired after construction where the identity service
        holding the binding is built later, as in `penpay up`)."""
        self._rest_token = rest_token

    async def _client_token(
        self, user_id: UserId, key: RequestKey | None, session_id: str | None
    ) -> tuple[str, bool]:
        """The user's Deriv token for their side of a withdrawal (v3 API token or REST OAuth token),
        from one read with the session (`session_id`: one the API left to this read to check) and
        the record under `key` (judged here: a repeat is answered before anything is locked); and
        whether that record is an expired one to replace."""
        async with self._uow() as uow:
            now = uow.clock.now()
            read = await uow.requests.read(
                user_id,
                now=now,
                session_id=session_id,
                key=key,
                key_hash=key.key_hash if key is not None else "",
            )
            replace = judge_read(read, key, now)
        return await self._usable_token(read.user, read.deriv_token), replace

    async def _usable_token(self, user: User | None, token: str | None) -> str:
        """`token` as read with `user`, or a REST user's OAuth token (refreshed when about to expire)."""
        if user is None or user.deriv_login_id is None or not token:
            raise DerivAccountNotBound("bind your Deriv account first", field="deriv_login_id")
        if user.deriv_login_id.is_rest and self._rest_token is not None:
            return await self._rest_token(user.id)
        return token

    # --- helpers ----------------------------------------------------------------------------

    async def _get(self, tx_id: TransactionId) -> Transaction:
        async with self._uow() as uow:
            tx = await uow.transactions.get(tx_id)
        assert tx is not None
        return tx

    async def _change(
        self,
        tx_id: TransactionId,
        change: Callable[[Transaction, datetime], None],
        expected: S,
        *,
        known: Transaction | None = None,
        key: RequestKey | None = None,
    ) -> Transaction:
        """`change` the transaction if it is still `expected`. `known`: as this request last read or
        committed it, changed and saved without reading it again (the save's version check stands
        in for the lock); read again, locked, when anything moved it meanwhile. `key`: claimed by
        this request, completed with the answer in the same database transaction."""
        if known is not None and known.status is expected:
            try:
                async with self._uow() as uow:
                    uow.transactions.resume(known)
                    change(known, uow.clock.now())
                    await uow.transactions.save(known)
                    await _answer(uow, key, known)
                    await uow.commit()
                return known
            except ConcurrentModification:
                pass  # `known` is spent: the stored state decides
        async with self._uow() as uow:
            tx = await uow.transactions.get_for_update(tx_id)
            assert tx is not None
            if tx.status is expected:
                change(tx, uow.clock.now())
                await uow.transactions.save(tx)
                await _answer(uow, key, tx)
                await uow.commit()
        return tx


def _answered_by(
    key: RequestKey | None,
) -> Callable[[PaymentsUnitOfWork, Transaction], Awaitable[None]] | None:
    """The key's answer written in the saga's unit of work of the debit (the same SqlUnitOfWork)."""
    if key is None:
        return None

    async def answer(uow: PaymentsUnitOfWork, tx: Transaction) -> None:
        if not isinstance(uow, AnswersRequests):
            raise TypeError("the saga's unit of work cannot store a request's answer")
        await uow.requests.complete(key, transaction_id=tx.id, body=key.answer(tx), now=uow.clock.now())

    return answer


async def _answer(uow: RequestUnitOfWork, key: RequestKey | None, tx: Transaction) -> None:
    """The key's answer (`tx` as saved), over this request's claim, in the unit of work of `tx`."""
    if key is not None:
        await uow.requests.complete(key, transaction_id=tx.id, body=key.answer(tx), now=uow.clock.now())


__all__ = ["WithdrawalOrchestrator"]
