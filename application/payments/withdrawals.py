"""WithdrawalOrchestrator: InitiateWithdrawal and ConfirmWithdrawal (PEC 3.1.8, an Orchestrator of
the withdrawal saga).

Two withdrawal steps run here, inline, because the user is waiting for them: asking Deriv to email
the code (InitiateWithdrawal) and the debit with that code (ConfirmWithdrawal, whose code is never
stored). The debit follows the saga's rule: intent committed before the call, answer recorded after
(by the saga runner, application/payments/saga.py, which then takes the withdrawal on through the one
transition table); the sweeper resolves the rest. The debit's answer commits with the payout's
reservation and its B2C intent, and this process sends the B2C (as InitiateDeposit sends its push).
The code request moves no money: nothing is committed before it, and the new Transaction is stored
once, with the caller's idempotency key and answer, as Deriv's answer left it.

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
from application.payments.saga import Payout, SagaRunner, no_checkpoint
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
        pays_out: bool = True,
    ) -> None:
        self._uow = unit_of_work
        # ConfirmWithdrawal claims the payout with the debit's answer and sends its B2C from here
        # (production); False records the debit alone, and the saga workers reserve and send it
        # (the tests of that step).
        self._pays_out = pays_out
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
        `key`: the caller's idempotency key, read in the one read and written with the code's answer
        (requests.py); None: the API claims and completes it."""
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
            if key is not None and existing is not None:
                # A PENDING one an earlier version stored: the code is asked for over it, its key
                # claimed first (the answer completes the claim, as that version's did).
                await uow.requests.claim(key, now=now, replace=replace)
                await uow.commit()
                key.claimed()
        if existing is None and self._policy is not None:
            known = KnownUser(read.user, read.deriv_token, read.usage) if read.user is not None else None
            await self._policy.check_money_movement(
                user_id=user_id, amount=amount, client_ip=client_ip, known=known
            )
        user = bound_user(read.user)
        token = await self._usable_token(user, read.deriv_token)
        if existing is not None:
            # The same request again while its code was never sent (a PENDING one an earlier
            # version stored before asking): ask again. A new code cancels an earlier one.
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
        return await self._start_with_code(tx, token, key, replace=replace)

    async def _start_with_code(
        self, tx: Transaction, token: str, key: RequestKey | None, *, replace: bool
    ) -> Transaction:
        """A new withdrawal (`tx`, PENDING in memory): Deriv emails the code first, then `tx` is stored
        as the answer left it (AWAITING_WITHDRAWAL_CODE, or FAILED when Deriv refused: a refusal to
        replay), with the key's answer, in one database transaction. The code request moves no
        money, so nothing is committed before it, not even the key: a repeat meanwhile asks for a
        code too (Deriv's newest code is the one that counts, and the user has it) and then, losing
        the race for the key hash, answers as the first did. Held back or not answered: nothing is
        stored (as for a refused deposit), and the same request again asks again."""
        refusal = await self._ask_for_code(tx, token)
        if refusal is not None:
            reason = refusal
            await self._store_new(tx, lambda t, now: t.fail(reason, now=now), key, answer=False)
            raise PaymentRefused(reason)
        return await self._store_new(
            tx, lambda t, now: t.withdrawal_code_sent(now=now), key, answer=True, replace=replace
        )

    async def _store_new(
        self,
        tx: Transaction,
        change: Callable[[Transaction, datetime], None],
        key: RequestKey | None,
        *,
        answer: bool,
        replace: bool = False,
    ) -> Transaction:
        """`change` the new `tx` and store it, with the answer under `key` when `answer` (a new
        record; `replace`: over the expired one the read found), else the API stores the error it
        ends in. A request that lost the race for the key hash (the unique column decides) answers
        as a repeat would."""
        if key is None:
            change(tx, self._uow().clock.now())  # the clock only: no unit of work is entered
            created = await create_once(
                self._uow, user_id=tx.user_id, key_hash=tx.idempotency_key_hash, looked=True, build=lambda: tx
            )
            return created.transaction
        async with self._uow() as uow:
            try:
                change(tx, uow.clock.now())
                await uow.transactions.add(tx)
                if answer:
                    await uow.requests.record_answer(
                        key, transaction_id=tx.id, body=key.answer(tx), now=uow.clock.now(), replace=replace
                    )
                await uow.commit()
                return tx
            except DuplicateIdempotencyKey:
                pass
        # A fresh unit of work: a new snapshot that sees the winner's committed rows.
        async with self._uow() as uow:
            await read_after_lost_race(uow, tx, key)
        # The winner's record is gone (released after a failure it may be retrying): it runs.
        raise IdempotencyKeyInFlight("a request with this idempotency key is still being processed")

    async def _ask_for_code(self, tx: Transaction, token: str) -> str | None:
        """Ask Deriv to email the code of `tx`: None when it did, Deriv's refusal when it refused;
        `DerivBusy` when held back, `ServiceUnavailable` when Deriv did not answer."""
        self._checkpoint("withdrawal.code.before_call")
        try:
            await self._deriv.request_withdrawal_code(
                client_token=token, amount=tx.amount, account=tx.deriv_login_id
            )
        except CallRefused as refused:
            return f"Deriv refused to send the verification code: {refused.reason}"
        except CallDeferred as deferred:
            raise DerivBusy.held_back(deferred, "the code request", "send the same request again") from None
        except (CallUnavailable, CallOutcomeUnknown) as lost:
            raise ServiceUnavailable(f"Deriv is not answering: {lost.reason}") from None
        return None

    async def _request_withdrawal_code(
        self, tx: Transaction, token: str, key: RequestKey | None
    ) -> Transaction:
        """Ask Deriv to email the code of the stored PENDING withdrawal `tx`; AWAITING_WITHDRAWAL_CODE
        after (committed with the key's answer, under a key claimed with the read). Not answered:
        PENDING stays, and the same request again asks again; else the sweeper fails it (no money
        can move without a code)."""
        refusal = await self._ask_for_code(tx, token)
        if refusal is not None:
            reason = refusal
            await self._change(tx.id, lambda t, now: t.fail(reason, now=now), S.PENDING, known=tx)
            raise PaymentRefused(reason)
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
        async with self._uow() as uow:
            now = uow.clock.now()
            read = await uow.requests.read(
                user_id,
                now=now,
                session_id=session_id,
                key=key,
                key_hash=key.key_hash if key is not None else "",
            )
            replace = judge_read(read, key, now)  # a repeat is answered before anything is locked
            # A stored token goes on to the lock in this same database transaction; a REST token may
            # need a refresh first (a call to Deriv's OAuth server), never made under the lock.
            token = self._stored_token(read.user, read.deriv_token)
            if token is not None:
                tx, requested = await self._debit_intent(uow, user_id, transaction_id, key, replace)
        if token is None:
            token = await self._usable_token(read.user, read.deriv_token)
            async with self._uow() as uow:
                tx, requested = await self._debit_intent(uow, user_id, transaction_id, key, replace)
        if not requested:
            return tx  # confirmed before: the saga carries on from here
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
        payout = Payout.SENT_HERE if self._pays_out else Payout.LATER
        done = await self._saga.record_deriv_withdrawal(
            tx.id, receipt.deriv_transaction_id, known=tx, also=_answered_by(key), payout=payout
        )
        return done if done is not None else await self._get(tx.id)

    def use_rest_tokens(self, rest_token: Callable[[UserId], Awaitable[str]]) -> None:
        """Take REST users' tokens from here (wired after construction where the identity service
        holding the binding is built later, as in `penpay up`)."""
        self._rest_token = rest_token

    async def _debit_intent(
        self,
        uow: RequestUnitOfWork,
        user_id: UserId,
        transaction_id: TransactionId,
        key: RequestKey | None,
        replace: bool,
    ) -> tuple[Transaction, bool]:
        """The debit's intent, locked, saved and committed with the key's claim; whether it was
        written (False: the debit was requested before, and the saga carries on from there)."""
        tx = await uow.transactions.get_for_update(transaction_id)
        if tx is None or tx.user_id != user_id or tx.type.value != "WITHDRAWAL":
            raise TransactionNotFound("no such withdrawal", field="transaction_id")
        if tx.status is not S.AWAITING_WITHDRAWAL_CODE or tx.deriv_withdrawal_may_have_gone():
            if tx.status is S.PENDING:
                raise NotAwaitingCode("the verification code has not been sent yet")
            if tx.deriv_withdrawal_may_have_gone():
                return tx, False
            raise NotAwaitingCode(f"the withdrawal is {tx.status.value}, not waiting for a code")
        tx.deriv_withdrawal_requested(now=uow.clock.now())
        await uow.transactions.save(tx)
        if key is not None:
            await uow.requests.claim(key, now=uow.clock.now(), replace=replace)
        await uow.commit()
        return tx, True

    def _stored_token(self, user: User | None, token: str | None) -> str | None:
        """`token` as read with `user`; None for a REST user whose OAuth token is fetched (and
        refreshed when about to expire) by `_usable_token`."""
        if user is None or user.deriv_login_id is None or not token:
            raise DerivAccountNotBound("bind your Deriv account first", field="deriv_login_id")
        if user.deriv_login_id.is_rest and self._rest_token is not None:
            return None
        return token

    async def _usable_token(self, user: User | None, token: str | None) -> str:
        """`token` as read with `user`, or a REST user's OAuth token (refreshed when about to expire)."""
        stored = self._stored_token(user, token)
        if stored is not None:
            return stored
        assert user is not None and self._rest_token is not None  # as _stored_token judged
        return await self._rest_token(user.id)

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
