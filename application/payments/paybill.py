"""Paybill (C2B) deposits: the customer's deposit reference, validation, and what a payment becomes.

A customer pays PenPay's paybill with their deposit reference (domain.payments.paybill) as the account
number. M-Pesa asks first (validation): PenPay accepts only a known reference of a user who can take
a deposit, an amount M-Pesa and Deriv both take at the quote of the moment, and what the compliance
policy allows (KYC on the snapshot PenPay holds, velocity and limits); the answer is stored per
TransID. Then M-Pesa confirms: a payment that matches the validation PenPay accepted (TransID,
amount, reference, shortcode, the visible digits of the masked MSISDN) becomes a DEPOSIT transaction
whose M-Pesa side is already confirmed, and the deposit saga books and transfers it to Deriv exactly
as an STK deposit. Anything else (no validation seen, a refused one, values that disagree, a rate
that moved the amount out of Deriv's limits) is booked to SUSPENSE and left for a person, with the
reason. Each TransID is settled once: a repeated confirmation changes nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import structlog

from application.alerts import raise_alert
from application.errors import DuplicateIdempotencyKey
from application.ledger import book
from application.payments import bookings
from application.payments.ports import PaymentUsers, RateSource
from application.unit_of_work import UnitOfWork
from domain.payments.idempotency import IdempotencyKey
from domain.payments.paybill import masked, new_reference, normalise_reference, visible_digits_agree
from domain.payments.ports import TransactionRepository
from domain.payments.transaction import Transaction
from domain.shared.errors import DomainError
from domain.shared.ids import TransactionId, UserId
from domain.wallet.deriv_rules import DerivTransferLimits
from domain.wallet.money import Currency, Money
from domain.wallet.mpesa_rules import require_mpesa_amount

log = structlog.get_logger("penpay.paybill")

SUSPENSE_ALERT = "paybill_suspense"
# The reason reconciliation gives a C2B payment it found at M-Pesa with no confirmation at PenPay
# (persistence.reconciliation): such a suspense is released by the confirmation arriving late.
RECONCILED = "reconciliation:"
ACCEPTED = "0"


# Compliance rules about amounts (answered as an invalid amount); the others are about the customer.
LIMIT_RULES = frozenset({"VELOCITY", "DAILY_LIMIT", "WEEKLY_LIMIT"})


class CompliancePolicy(Protocol):
    """application.identity.compliance.CompliancePolicy, as validation uses it."""

    async def check_money_movement(
        self, *, user_id: UserId, amount: Money, client_ip: str | None = None, refresh: bool = True
    ) -> None: ...


class Refusal(StrEnum):
    """Daraja's C2B validation result codes (anything but "0" cancels the payment)."""

    INVALID_MSISDN = "C2B00011"
    INVALID_ACCOUNT = "C2B00012"
    INVALID_AMOUNT = "C2B00013"
    INVALID_KYC = "C2B00014"
    INVALID_SHORTCODE = "C2B00015"
    OTHER = "C2B00016"


class Status(StrEnum):
    """c2b_payments.status."""

    VALIDATED = "VALIDATED"  # PenPay accepted the validation; the confirmation has not come yet
    REFUSED = "REFUSED"  # PenPay refused the validation (result_code)
    DEPOSIT = "DEPOSIT"  # confirmed and made a DEPOSIT transaction
    SUSPENSE = "SUSPENSE"  # confirmed, booked to suspense: a person assigns or refunds it
    REFUNDED = "REFUNDED"  # given back to its payer by M-Pesa's Reversal (application.review.paybill_refund)


SETTLED = frozenset({Status.DEPOSIT, Status.SUSPENSE, Status.REFUNDED})


class Outcome(StrEnum):
    DEPOSIT = "DEPOSIT"
    SUSPENSE = "SUSPENSE"
    DUPLICATE = "DUPLICATE"
    CONFLICT = "CONFLICT"  # a second confirmation of a settled TransID with other values: for review


@dataclass(frozen=True, slots=True)
class PaybillPayment:
    """One M-Pesa TransID as M-Pesa describes it (validation or confirmation); values untrusted."""

    trans_id: str
    shortcode: str
    bill_ref: str
    amount_minor: int | None  # KES cents; None when the amount is not a whole number of cents
    msisdn: str | None  # as shown (usually masked); compared on its visible digits only
    raw: str


@dataclass(frozen=True, slots=True)
class StoredPayment:
    trans_id: str
    shortcode: str
    bill_ref: str
    amount_minor: int
    msisdn_shown: str | None
    status: Status
    result_code: str | None
    user_id: UserId | None
    transaction_id: TransactionId | None
    reason: str | None = None
    proposed_user_id: UserId | None = None
    proposed_by: str | None = None
    raw_confirmation: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    result_code: str
    result_desc: str

    @property
    def accepted(self) -> bool:
        return self.result_code == ACCEPTED


@dataclass(frozen=True, slots=True)
class Settled:
    outcome: Outcome
    transaction_id: TransactionId | None = None
    reason: str = ""


class PaybillStore(Protocol):
    async def reference_of(self, user_id: UserId) -> str | None: ...

    async def add_reference(self, reference: str, user_id: UserId, *, now: datetime) -> bool:
        """False when the reference (or a reference for this user) exists already."""
        ...

    async def user_of(self, reference: str) -> UserId | None: ...

    async def lock(self, trans_id: str) -> StoredPayment | None: ...

    async def insert(
        self, payment: PaybillPayment, *, status: Status, now: datetime, **values: object
    ) -> bool:
        """False when the TransID is there already (a concurrent delivery won)."""
        ...

    async def update(self, trans_id: str, *, now: datetime, **values: object) -> None: ...

    async def keep_for_review(
        self, payment: PaybillPayment, reason: str, detail: str, *, now: datetime
    ) -> None:
        """The payment's body in the M-Pesa review table (mpesa_callback_reviews), for a person."""
        ...

    async def in_suspense(self, *, limit: int) -> list[StoredPayment]:
        """Payments held in suspense, oldest first."""
        ...

    async def close_reviews(self, trans_id: str, *, by: str, now: datetime) -> None:
        """Mark the payment's open review rows resolved."""
        ...

    async def has_open_refund(self, trans_id: str) -> bool:
        """Whether a refund of it (application.review.paybill_refund) is proposed or under way."""
        ...


class PaybillUnitOfWork(UnitOfWork, Protocol):
    """The unit of work of paybill deposits: the one port, with their repositories."""

    @property
    def transactions(self) -> TransactionRepository: ...
    @property
    def users(self) -> PaymentUsers: ...
    @property
    def paybill(self) -> PaybillStore: ...


def key_hash(trans_id: str) -> str:
    """The deposit's idempotency key: one transaction per M-Pesa TransID, enforced by the database."""
    return hashlib.sha256(f"paybill:{trans_id}".encode()).hexdigest()


class PaybillDeposits:
    def __init__(
        self,
        *,
        unit_of_work: Callable[[], PaybillUnitOfWork],
        rates: RateSource,
        transfer_limits: DerivTransferLimits,
        shortcode: str,
        policy: CompliancePolicy | None = None,
        randbelow: Callable[[int], int] = secrets.randbelow,
    ) -> None:
        self._uow = unit_of_work
        self._policy = policy
        self._rates = rates
        self._limits = transfer_limits
        self._shortcode = shortcode
        self._randbelow = randbelow

    @property
    def shortcode(self) -> str:
        return self._shortcode

    async def reference_for(self, user_id: UserId) -> str:
        """The user's deposit reference, made on first use and the same ever after."""
        for _ in range(8):
            async with self._uow() as uow:
                found = await uow.paybill.reference_of(user_id)
                if found is not None:
                    return found
                if await uow.paybill.add_reference(
                    new_reference(self._randbelow), user_id, now=uow.clock.now()
                ):
                    await uow.commit()
        raise RuntimeError("no free deposit reference after 8 draws")

    # --- validation ---------------------------------------------------------------------------

    async def validate(self, payment: PaybillPayment) -> Answer:
        """M-Pesa asks whether to take this payment. The answer is stored with the TransID, and a
        repeated question gets the same answer. It is judged holding no lock: the compliance policy
        reads and audits in units of work of its own."""
        async with self._uow() as uow:
            stored = await uow.paybill.lock(payment.trans_id)
        if stored is not None:
            return _answer(stored.result_code or ACCEPTED)
        async with self._uow() as uow:
            refusal, why, user_id = await self._judge(uow, payment, uow.clock.now())
        if refusal is None and user_id is not None and self._policy is not None:
            refusal, why = await self._compliance(user_id, payment)
        status = Status.VALIDATED if refusal is None else Status.REFUSED
        code = ACCEPTED if refusal is None else refusal.value
        async with self._uow() as uow:
            inserted = await uow.paybill.insert(
                payment,
                status=status,
                now=uow.clock.now(),
                result_code=code,
                reason=why or None,
                user_id=user_id,
            )
            if not inserted:  # the same question racing itself: the first answer stands
                stored = await uow.paybill.lock(payment.trans_id)
                return _answer(stored.result_code if stored and stored.result_code else ACCEPTED)
            await uow.commit()
        log.info("paybill.validated", trans_id=payment.trans_id, result_code=code, why=why)
        return _answer(code)

    async def _compliance(self, user_id: UserId, payment: PaybillPayment) -> tuple[Refusal | None, str]:
        """The KYC/AML policy an STK deposit meets, on the KYC snapshot PenPay holds (M-Pesa waits
        for the answer: no call to Deriv here)."""
        assert self._policy is not None and payment.amount_minor is not None
        try:
            await self._policy.check_money_movement(
                user_id=user_id, amount=Money(payment.amount_minor, Currency.KES), refresh=False
            )
        except DomainError as refused:
            rule = str(getattr(refused, "rule", ""))
            code = Refusal.INVALID_AMOUNT if rule in LIMIT_RULES else Refusal.INVALID_KYC
            return code, f"compliance: {rule or type(refused).__name__}: {refused}"[:200]
        return None, ""

    async def _judge(
        self, uow: PaybillUnitOfWork, payment: PaybillPayment, now: datetime
    ) -> tuple[Refusal | None, str, UserId | None]:
        if payment.shortcode != self._shortcode:
            return Refusal.INVALID_SHORTCODE, f"shortcode {payment.shortcode} is not PenPay's paybill", None
        reference = normalise_reference(payment.bill_ref)
        user_id = None if reference is None else await uow.paybill.user_of(reference)
        if user_id is None:
            return Refusal.INVALID_ACCOUNT, "no such deposit reference", None
        user = await uow.users.get(user_id)
        if user is None or user.deriv_login_id is None:
            return Refusal.INVALID_ACCOUNT, "the reference's user has no Deriv account bound", user_id
        problem = self._amount_problem(payment, now)
        if problem:
            return Refusal.INVALID_AMOUNT, problem, user_id
        return None, "", user_id

    def _amount_problem(self, payment: PaybillPayment, now: datetime) -> str:
        if payment.amount_minor is None or payment.amount_minor <= 0:
            return "the amount is not a whole number of shillings"
        amount = Money(payment.amount_minor, Currency.KES)
        try:
            require_mpesa_amount(amount)
            self._limits.check_deposit(
                amount, self._rates.lock(base=Currency.KES, quote=Currency.USD, now=now), at=now
            )
        except DomainError as refused:
            return str(refused)[:200]
        return ""

    # --- confirmation -------------------------------------------------------------------------

    async def confirm(self, payment: PaybillPayment) -> Settled:
        """M-Pesa took the payment. One database transaction: it becomes a DEPOSIT (the saga takes
        it from its DepositInitiated event) or goes to SUSPENSE; a settled TransID changes nothing."""
        async with self._uow() as uow:
            now = uow.clock.now()
            stored = await uow.paybill.lock(payment.trans_id)
            released = None if stored is None else await self._released_late(uow, payment, stored, now)
            if released is not None:
                await uow.commit()
                log.info("paybill.released_late", trans_id=payment.trans_id, transaction_id=str(released))
                return Settled(Outcome.DEPOSIT, released)
            if stored is not None and stored.status in SETTLED:
                repeated = await self._repeat(uow, payment, stored, now)
                if repeated.outcome is Outcome.CONFLICT:
                    raise_alert(
                        SUSPENSE_ALERT,
                        "a second confirmation of a settled paybill payment disagrees with the first",
                        trans_id=payment.trans_id,
                    )
                return repeated
            why = self._mismatch(payment, stored)
            if stored is None:
                if not await uow.paybill.insert(payment, status=Status.SUSPENSE, now=now, reason="settling"):
                    return Settled(Outcome.DUPLICATE)  # a concurrent delivery of it is being settled
            if why:
                settled = await self._suspense(uow, payment, why, now)
            else:
                assert stored is not None and stored.user_id is not None
                settled = await self._deposit(uow, payment, stored.user_id, now)
            await uow.commit()
        if settled.outcome is Outcome.SUSPENSE:
            raise_alert(
                SUSPENSE_ALERT,
                "a paybill payment is held in suspense for a person",
                trans_id=payment.trans_id,
                reason=settled.reason,
            )
        log.info(
            "paybill.confirmed", trans_id=payment.trans_id, outcome=settled.outcome.value, why=settled.reason
        )
        return settled

    async def _released_late(
        self, uow: PaybillUnitOfWork, payment: PaybillPayment, stored: StoredPayment, now: datetime
    ) -> TransactionId | None:
        """A confirmation Daraja retried after reconciliation put the payment in suspense (its first
        delivery was lost): when it matches the validation PenPay accepted for a known reference,
        and nobody is deciding about the payment, the suspense is released and the deposit started
        in this one database transaction, as the confirmation would have done on time. Otherwise
        it is a repeat and the payment stays in suspense for a person. The deposit started, or None."""
        if not (
            stored.status is Status.SUSPENSE
            and (stored.reason or "").startswith(RECONCILED)
            and stored.result_code == ACCEPTED
            and stored.user_id is not None
            and stored.proposed_by is None
            and not self._mismatch(payment, stored)
            and payment.amount_minor == stored.amount_minor
        ):
            return None
        if await uow.paybill.has_open_refund(stored.trans_id):
            return None
        if await self.deposit_problem(uow, payment, stored.user_id, now):
            return None  # the rate moved it out of Deriv's limits: a person decides
        amount = Money(stored.amount_minor, Currency.KES)
        await book(
            uow,
            await bookings.paybill_suspense_released(
                uow.ledger, amount, stored.trans_id, str(stored.user_id)
            ),
        )
        tx = await self.start_deposit(uow, payment, stored.user_id, now)
        await uow.paybill.update(
            stored.trans_id,
            now=now,
            status=Status.DEPOSIT,
            transaction_id=tx.id,
            reason=None,
            raw_confirmation=payment.raw,
            resolved_by="m-pesa:late-confirmation",
        )
        await uow.paybill.close_reviews(stored.trans_id, by="m-pesa:late-confirmation", now=now)
        uow.audit(
            action="paybill.suspense_released_late",
            subject_type="PaybillPayment",
            subject_id=stored.trans_id,
            details={"user_id": str(stored.user_id), "transaction_id": str(tx.id), "was": stored.reason},
        )
        return tx.id

    @staticmethod
    def _mismatch(payment: PaybillPayment, stored: StoredPayment | None) -> str:
        """Why this confirmation cannot become a deposit, or "" when it matches what was validated."""
        if stored is None:
            return "no validation was seen for this payment (skipped, or the paybill's validation is off)"
        if stored.status is Status.REFUSED:
            return f"taken although PenPay refused it at validation ({stored.result_code})"
        if payment.amount_minor is None or payment.amount_minor != stored.amount_minor:
            return "the confirmed amount differs from the validated one"
        if payment.bill_ref.strip().upper() != stored.bill_ref.strip().upper():
            return "the confirmed account number differs from the validated one"
        if payment.shortcode != stored.shortcode:
            return "the confirmed shortcode differs from the validated one"
        if not visible_digits_agree(payment.msisdn, stored.msisdn_shown):
            return "the payer's visible MSISDN digits differ from the validated ones"
        if stored.user_id is None:
            return "the validated reference names no user"
        return ""

    async def deposit_problem(
        self, uow: PaybillUnitOfWork, payment: PaybillPayment, user_id: UserId, now: datetime
    ) -> str:
        """Why this payment cannot be the user's deposit now, or "" (the rate of this moment)."""
        user = await uow.users.get(user_id)
        problem = self._amount_problem(payment, now)
        if user is None or user.deriv_login_id is None:
            problem = problem or "the user has no Deriv account bound"
        return problem

    async def start_deposit(
        self, uow: PaybillUnitOfWork, payment: PaybillPayment, user_id: UserId, now: datetime
    ) -> Transaction:
        """The DEPOSIT the payment becomes (its M-Pesa side confirmed), added to the unit of work."""
        user = await uow.users.get(user_id)
        assert user is not None and user.deriv_login_id is not None and payment.amount_minor is not None
        amount = Money(payment.amount_minor, Currency.KES)
        tx = Transaction.start_paybill_deposit(
            user_id=user_id,
            amount=amount,
            idempotency_key=IdempotencyKey(key_hash(payment.trans_id), str(user_id), "deposit"),
            locked_rate=self._rates.lock(base=Currency.KES, quote=Currency.USD, now=now),
            phone=user.phone,
            deriv_login_id=user.deriv_login_id,
            mpesa_receipt_number=payment.trans_id,
            shortcode=payment.shortcode,
            raw_confirmation=payment.raw,
            now=now,
        )
        await uow.transactions.add(tx)
        return tx

    async def _deposit(
        self, uow: PaybillUnitOfWork, payment: PaybillPayment, user_id: UserId, now: datetime
    ) -> Settled:
        problem = await self.deposit_problem(uow, payment, user_id, now)  # the quote may have moved
        if problem:
            return await self._suspense(uow, payment, problem, now)
        try:
            tx = await self.start_deposit(uow, payment, user_id, now)
        except DuplicateIdempotencyKey:  # cannot happen under the TransID's row lock; the last guard
            return Settled(Outcome.DUPLICATE)
        await uow.paybill.update(
            payment.trans_id,
            now=now,
            status=Status.DEPOSIT,
            transaction_id=tx.id,
            reason=None,
            raw_confirmation=payment.raw,
        )
        return Settled(Outcome.DEPOSIT, tx.id)

    async def _suspense(
        self, uow: PaybillUnitOfWork, payment: PaybillPayment, why: str, now: datetime
    ) -> Settled:
        amount_minor = payment.amount_minor
        if amount_minor is not None and amount_minor > 0:
            await book(
                uow,
                await bookings.paybill_suspense(
                    uow.ledger, Money(amount_minor, Currency.KES), payment.trans_id, why
                ),
            )
        else:
            why = f"{why}; the amount is not a whole number of cents, nothing booked"
        await uow.paybill.update(
            payment.trans_id, now=now, status=Status.SUSPENSE, reason=why[:255], raw_confirmation=payment.raw
        )
        await uow.paybill.keep_for_review(payment, "PAYBILL_SUSPENSE", why, now=now)
        return Settled(Outcome.SUSPENSE, reason=why)

    async def _repeat(
        self, uow: PaybillUnitOfWork, payment: PaybillPayment, stored: StoredPayment, now: datetime
    ) -> Settled:
        same = (
            payment.amount_minor == stored.amount_minor
            and payment.bill_ref.strip().upper() == stored.bill_ref.strip().upper()
            and payment.shortcode == stored.shortcode
            and visible_digits_agree(payment.msisdn, stored.msisdn_shown)
        )
        if same:
            return Settled(Outcome.DUPLICATE, stored.transaction_id)
        why = "a second confirmation of a settled TransID with other values"
        await uow.paybill.keep_for_review(payment, "CONFLICTING_RESULT", why, now=now)
        await uow.commit()
        return Settled(Outcome.CONFLICT, stored.transaction_id, why)


def _answer(code: str) -> Answer:
    return Answer(code, "Accepted" if code == ACCEPTED else "Rejected")


def shown_msisdn(msisdn: str | None) -> str | None:
    """What the store keeps of the payer's MSISDN."""
    return masked(msisdn)
