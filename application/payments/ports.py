"""Ports of the payment sagas: what they need from M-Pesa, Deriv, rates and storage.

Adapters: mpesa_adapter.saga_port (Daraja + the callback inbox), deriv_gateway.payments_client
(the gateway's gRPC API), persistence (unit of work, saga steps). Every failure of a call is
raised as one of application.payments.errors' CallRefused / CallUnavailable /
CallOutcomeUnknown / NotExecuted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from application.identity.ports import KnownUser, UsageQuery
from application.payments.lost_push import LostPushRecords
from application.payments.mpesa_evidence import CallbackReviews
from application.unit_of_work import UnitOfWork
from domain.payments.ports import TransactionRepository
from domain.payments.stk_evidence import StkQueryAnswer
from domain.payments.transaction import Transaction
from domain.shared.ids import TransactionId, UserId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.user import User
from domain.wallet.locked_rate import LockedRate
from domain.wallet.money import Currency, Money

# --- external calls ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StkPushAccepted:
    checkout_request_id: str
    merchant_request_id: str


class Verdict(StrEnum):
    CONFIRMED = "CONFIRMED"  # paid, cross-checked
    FAILED = "FAILED"  # not paid
    PENDING = "PENDING"  # not known yet (a query was sent or could not be)
    MISMATCH = "MISMATCH"  # the evidence disagrees: a person decides


class MpesaGateway(Protocol):
    async def stk_push(
        self, *, transaction_id: TransactionId, phone: str, amount: Money
    ) -> StkPushAccepted: ...

    async def query_stk(self, deposit: Transaction) -> StkQueryAnswer | Verdict:
        """Cross-check a callback (or its absence) with STK Query about `deposit`'s push, as the
        saga's step just read it (not read again). Writes nothing: a final answer is returned for
        the saga to record on the deposit in the commit of what it decides (the credit, the
        failure, the review); a Verdict when there is nothing to record (PENDING: ask again later)."""
        ...

    async def stk_answer_recorded(self, checkout_request_id: str, *, parked: bool = False) -> bool:
        """The push's answer is stored: a callback that came before it (kept aside as unknown) is
        taken in now. True when one was, so the saga decides again at once. `parked`: the caller
        saw one parked (in the answer's own commit), so no look for one first."""
        ...

    async def lost_push_records(self, *, since: datetime, until: datetime) -> LostPushRecords:
        """What M-Pesa's own records show around a push whose answer was lost: Pull Transactions
        of the STK shortcode over [since, until] and the paid STK callbacks parked since `since`
        (read-only). Raises CallUnavailable when M-Pesa's list cannot be read now."""
        ...

    async def b2c(self, *, originator_conversation_id: str, phone: str, amount: Money) -> str:
        """Send (or re-send, same id) a B2C payment; returns Daraja's ConversationID.
        A duplicate OriginatorConversationID means an earlier attempt got through: the adapter
        returns normally (with an empty ConversationID) in that case."""
        ...

    async def confirm_b2c(
        self, originator_conversation_id: str, *, read: Transaction | None = None
    ) -> Verdict:
        """What the payout's evidence proves, or one Transaction Status query sent (PENDING: its
        answer comes to the ResultURL). `read`: the withdrawal as the caller just read it (the saga's
        step), so the adapter does not read it again."""
        ...


@dataclass(frozen=True, slots=True)
class DerivReceipt:
    operation_id: str
    deriv_transaction_id: int


class DerivDepositGateway(Protocol):
    """Deriv's side of a deposit (and of a withdrawal's refund): the agent pays the user's account."""

    async def transfer(self, *, transfer_id: str, loginid: DerivLoginId, amount: Money) -> DerivReceipt:
        """paymentagent_transfer, at most once per transfer_id (the gateway's journal)."""
        ...


class DerivWithdrawalGateway(Protocol):
    """Deriv's side of a withdrawal: the emailed code, then the debit of the user's account with it."""

    async def request_withdrawal_code(
        self, *, client_token: str, amount: Money, account: DerivLoginId | None = None
    ) -> None:
        """`account`: the user's Deriv account; a new-API one (`is_rest`) goes over REST."""
        ...

    async def withdraw(
        self,
        *,
        withdrawal_id: str,
        client_token: str,
        verification_code: str,
        amount: Money,
        resolve_only: bool = False,
        account: DerivLoginId | None = None,
    ) -> DerivReceipt: ...


class MoneyMovementPolicy(Protocol):
    """KYC, limits and velocity (application.identity.compliance.CompliancePolicy)."""

    async def check_money_movement(
        self, *, user_id: UserId, amount: Money, client_ip: str | None = None, known: KnownUser | None = None
    ) -> None: ...

    def usage_query(self, amount: Money, now: datetime) -> UsageQuery:
        """The limits' figures, for the caller's one read to fetch (handed back in KnownUser.usage)."""
        ...


class RateSource(Protocol):
    def lock(self, *, base: Currency, quote: Currency, now: datetime) -> LockedRate:
        """A quote PenPay honours until its expiry."""
        ...


# --- storage ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepRecord:
    step: str
    attempts: int
    started_at: datetime
    updated_at: datetime
    detail: str | None = None
    retry_at: datetime | None = None  # deferred: not to be tried again before this


@dataclass(frozen=True, slots=True)
class LockedSaga:
    """A transaction under its row lock, with its saga-step journal: what one saga step decides on."""

    transaction: Transaction
    steps: Mapping[str, StepRecord]


class SagaSteps(Protocol):
    async def get(self, transaction_id: TransactionId) -> Mapping[str, StepRecord]: ...

    async def lock(self, transaction_id: TransactionId, *, skip_locked: bool = False) -> LockedSaga | None:
        """The transaction under its row lock (held until the unit of work ends) and its steps, read
        after the lock; None when there is no such transaction or, `skip_locked`, another worker's
        database transaction holds it (that worker is moving it)."""
        ...

    async def start(
        self, transaction_id: TransactionId, step: str, *, now: datetime, detail: str | None = None
    ) -> None:
        """Record one more attempt of `step` (insert, or attempts + 1); clears a deferral."""
        ...

    async def defer(
        self, transaction_id: TransactionId, step: str, *, now: datetime, until: datetime, detail: str
    ) -> None:
        """The attempt just started was held back unsent: take it back, and wait until `until`."""
        ...

    async def arm(
        self, transaction_id: TransactionId, step: str, *, now: datetime, until: datetime, detail: str
    ) -> None:
        """`step` started at `now` with no attempt counted, to be asked before `until` (its retry
        time: decisions.armed_until), unless it has a row already (which is then left as it is)."""
        ...

    async def reset(self, transaction_id: TransactionId, step: str, *, now: datetime, detail: str) -> None:
        """`step`'s attempts start over (a new send's outcome gets its own queries)."""
        ...

    def look_again_at(self, transaction_id: TransactionId, at: datetime) -> None:
        """Nothing for time alone to do before `at` (decisions.next_due of the state being saved):
        written with the transaction's next save in this unit of work, and the sweepers pass over it
        until then (or until they would look anyway after their longest quiet)."""
        ...


class PaymentUsers(Protocol):
    async def get(self, user_id: UserId) -> User | None: ...

    async def load_deriv_token(self, user_id: UserId) -> str | None: ...


class PaymentsUnitOfWork(UnitOfWork, Protocol):
    """The unit of work of the payment use cases and sagas: the one port, with their repositories."""

    @property
    def transactions(self) -> TransactionRepository: ...
    @property
    def saga_steps(self) -> SagaSteps: ...
    @property
    def users(self) -> PaymentUsers: ...
    @property
    def callback_reviews(self) -> CallbackReviews: ...
