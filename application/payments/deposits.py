"""DepositOrchestrator: InitiateDeposit (PEC 3.1.8, an Orchestrator of the deposit saga).

It checks the request in one read (application/payments/requests.py), stores the Transaction with its
locked quote and, under the caller's key, its answer, and returns. Given the saga runner, it also
owns the first step: the STK push's intent is committed with the Transaction (one commit, not one
more of a saga worker's) and the push is sent right after, in the background, the answer recorded
by the saga's own code (SagaRunner.claim_stk_push); without it, the saga runner
(application/payments/saga.py) sends the push, woken by the DepositInitiated event. Either way every
later step goes through the one transition table (application/payments/decisions.py).

An amount Deriv would refuse (outside the payment agent's transfer limits) is refused first, before
the compliance policy or anything else can write: the customer has not paid and no Transaction takes
the idempotency key, so a corrected request can start afresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from application.errors import DuplicateIdempotencyKey
from application.identity.ports import KnownUser
from application.payments.float_cover import float_code, require_float_cover
from application.payments.ports import MoneyMovementPolicy, RateSource
from application.payments.requests import (
    RequestKey,
    RequestUnitOfWork,
    bound_user,
    judge_read,
    read_after_lost_race,
)
from application.payments.saga import SagaRunner
from domain.payments.idempotency import IdempotencyKey
from domain.payments.status import TransactionType
from domain.payments.transaction import Transaction
from domain.shared.errors import DomainError, InvalidValue
from domain.shared.ids import UserId
from domain.user.phone_number import PhoneNumber
from domain.wallet.deriv_rules import DerivTransferLimits
from domain.wallet.money import Currency, Money
from domain.wallet.mpesa_rules import require_mpesa_amount


class DepositOrchestrator:
    def __init__(
        self,
        *,
        unit_of_work: Callable[[], RequestUnitOfWork],
        rates: RateSource,
        transfer_limits: DerivTransferLimits,
        policy: MoneyMovementPolicy | None = None,
        saga: SagaRunner | None = None,
    ) -> None:
        """`saga`: this process sends each new deposit's STK push (see the module docstring)."""
        self._uow = unit_of_work
        self._limits = transfer_limits
        self._rates = rates
        self._policy = policy
        self._saga = saga

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
        compliance: asyncio.Future[None] | None = None
        try:
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
                replace = judge_read(read, key, now)
                if read.transaction_under_key is not None:
                    existing = await uow.transactions.get(read.transaction_under_key)
                    if existing is not None:
                        return existing
                if refused is not None:
                    raise refused
                # The Deriv agent float must hold the USD now, or the customer would pay for a wait.
                await require_float_cover(
                    uow, TransactionType.DEPOSIT, payout, balance_minor=read.float_balance
                )
                if self._policy is not None:
                    # Judged from what was read, so it starts now: the read's own transaction ends
                    # (a round trip) while the rate limit and Deriv's KYC are asked.
                    known = (
                        KnownUser(read.user, read.deriv_token, read.usage) if read.user is not None else None
                    )
                    compliance = asyncio.ensure_future(
                        self._policy.check_money_movement(
                            user_id=user_id, amount=amount, client_ip=client_ip, known=known
                        )
                    )
        except BaseException:
            if compliance is not None:  # the read's transaction failed to end: nothing goes on
                compliance.cancel()
                await asyncio.gather(compliance, return_exceptions=True)
            raise
        if compliance is not None:
            await compliance
        user = bound_user(read.user)
        assert user.deriv_login_id is not None
        transaction = Transaction.start_deposit(
            user_id=user_id,
            amount=amount,
            idempotency_key=IdempotencyKey(idempotency_key_hash, str(user_id), "deposit"),
            locked_rate=rate,
            phone=PhoneNumber(phone) if phone else user.phone,
            deriv_login_id=user.deriv_login_id,
            now=now,
            pushed_by_initiator=self._saga is not None,
        )
        return await self._create_answered(transaction, key, replace=replace)

    async def drain(self) -> None:
        """Wait until the pushes sent from here have their answers recorded (SagaRunner.drain)."""
        if self._saga is not None:
            await self._saga.drain()

    async def _create_answered(
        self, tx: Transaction, key: RequestKey | None, *, replace: bool
    ) -> Transaction:
        """Store `tx` and, under a key, its answer, in one database transaction. A request that lost
        the race for the key (the unique key hash) answers as a repeat would. With the saga runner,
        the push's intent is in that database transaction too, and the push goes once it commits."""
        async with self._uow() as uow:
            try:
                await uow.transactions.add(tx)
                push = None
                if self._saga is not None:
                    push = await self._saga.claim_stk_push(uow, tx)
                if key is not None:
                    await uow.requests.record_answer(
                        key, transaction_id=tx.id, body=key.answer(tx), now=uow.clock.now(), replace=replace
                    )
                await uow.commit()
            except DuplicateIdempotencyKey:
                pass
            else:
                if push is not None and self._saga is not None:
                    self._saga.send_soon(push)
                return tx
        # A fresh unit of work: a new snapshot that sees the winner's committed rows.
        async with self._uow() as uow:
            read = await read_after_lost_race(uow, tx, key)
            winner = (
                await uow.transactions.get(read.transaction_under_key)
                if read.transaction_under_key is not None
                else None
            )
        if winner is None:
            raise DuplicateIdempotencyKey("the idempotency key is taken but its transaction is not visible")
        return winner


__all__ = ["DepositOrchestrator"]
