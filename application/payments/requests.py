"""A payment request's one read and its stored answer (PEC 10), for the use cases that create a
Transaction under the caller's idempotency key (InitiateDeposit; InitiateWithdrawal reads the same way).

The API hands the use case the key as it scoped it (`RequestKey`) and, when it left the session
check to the use case, the session id. One read then answers everything asked before anything
else is done: the user and their Deriv token, whether the session is still open, the answer stored
under the key, and the Transaction already under the key hash. The answer of a new request is
written in the Transaction's own database transaction (`record_answer`): the effect and "this key
is done, here is its response" commit together or not at all, so there is no claim to release and
no window in which one is committed without the other.

A request whose answer comes after a call out (InitiateWithdrawal, ConfirmWithdrawal) writes an
IN_FLIGHT claim with its intent instead (`claim`: a repeat meanwhile is told "in flight") and
completes it with its answer (`complete`), each in a database transaction the use case commits anyway.

- A stored answer for the same request: `StoredAnswer` is raised, carrying the response bytes,
  which the API sends as they are.
- The key used for another request: `IdempotencyKeyReused`.
- A claim still in flight (a record another PenPay version took with its own claim):
  `IdempotencyKeyInFlight`.
- Two new requests under one key at once: the unique transactions.idempotency_key_hash lets one
  commit; the other then reads the winner's answer and answers as a repeat would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from application.identity.ports import Usage, UsageQuery
from application.payments.errors import DerivAccountNotBound, TransactionNotFound
from application.payments.ports import PaymentsUnitOfWork
from domain.payments.transaction import Transaction
from domain.shared.errors import DomainError
from domain.shared.ids import TransactionId, UserId
from domain.user.user import User


@dataclass(frozen=True, slots=True)
class RequestKey:
    """The caller's idempotency key as the API scoped it, and how its answer is written."""

    scope: str
    key_hash: str
    fingerprint: str  # which request the key was used for
    answer: Callable[[Transaction], bytes]  # the response a repeat is sent, byte for byte
    # Told when the use case committed an IN_FLIGHT claim with its intent (claimed, then
    # completed: InitiateWithdrawal, ConfirmWithdrawal), so the API releases or completes that one.
    claimed: Callable[[], None] = lambda: None


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """The idempotency record found under the key."""

    fingerprint: str
    completed: bool  # False: a claim in flight
    response_code: int | None
    response_body: bytes | None
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class RequestRead:
    """What the one read found. `user` is read without its devices: for judging, never for saving."""

    user: User | None
    deriv_token: str | None
    session_open: bool  # True when no session was asked about
    stored: StoredRequest | None
    transaction_under_key: TransactionId | None
    usage: Usage | None = None  # the AML limits' figures, when asked for
    float_balance: int | None = None  # the float's balance in minor units, when asked for and it exists


class PaymentRequests(Protocol):
    async def read(
        self,
        user_id: UserId,
        *,
        now: datetime,
        session_id: str | None,
        key: RequestKey | None,
        key_hash: str,
        usage: UsageQuery | None = None,
        float_code: str | None = None,
    ) -> RequestRead: ...

    async def record_answer(
        self, key: RequestKey, *, transaction_id: TransactionId, body: bytes, now: datetime, replace: bool
    ) -> None:
        """Store the answer of a new request (`replace`: over an expired record under the key)."""
        ...

    async def claim(self, key: RequestKey, *, now: datetime, replace: bool) -> None:
        """Write the key IN_FLIGHT (a lease) with the intent of a request whose answer comes after
        an external call; `IdempotencyKeyInFlight` when another request's record got in first."""
        ...

    async def complete(
        self, key: RequestKey, *, transaction_id: TransactionId, body: bytes, now: datetime
    ) -> bool:
        """Store the answer over this request's own claim; False when the claim is gone (its lease
        ran out and a retry took the key over: that one stores its own answer)."""
        ...


@runtime_checkable
class AnswersRequests(Protocol):
    """A unit of work that can store a request's answer (told apart when handed another port's)."""

    @property
    def requests(self) -> PaymentRequests: ...


class RequestUnitOfWork(PaymentsUnitOfWork, Protocol):
    @property
    def requests(self) -> PaymentRequests: ...


class StoredAnswer(Exception):  # not an error: the first request's answer, to send again
    """The same request was answered before: send its stored response."""

    def __init__(self, response_code: int, response_body: bytes) -> None:
        super().__init__("replay of a stored answer")
        self.response_code = response_code
        self.response_body = response_body


class IdempotencyKeyReused(DomainError):
    reason = "IDEMPOTENCY_KEY_REUSED"


class IdempotencyKeyInFlight(DomainError):
    reason = "IDEMPOTENCY_KEY_IN_FLIGHT"


class SessionEnded(DomainError):
    reason = "SESSION_ENDED"


def judge_stored(read: RequestRead, key: RequestKey | None, now: datetime) -> bool:
    """Raise what a record under the key decides; True when an expired record is to be replaced."""
    stored = read.stored
    if key is None or stored is None:
        return False
    if stored.expires_at <= now:
        return True  # retention (or a claim's lease) ran out: the key is free again
    if stored.fingerprint != key.fingerprint:
        raise IdempotencyKeyReused("this idempotency key was used for a different request")
    if not stored.completed:
        raise IdempotencyKeyInFlight("a request with this idempotency key is still being processed")
    raise StoredAnswer(stored.response_code or 0, stored.response_body or b"")


def judge_read(read: RequestRead, key: RequestKey | None, now: datetime) -> bool:
    """The one read judged in the order a caller sees refusals: the session (`SessionEnded`), then
    the record under the key (`judge_stored`). Whether an expired record under the key is to be
    replaced."""
    if not read.session_open:
        raise SessionEnded("this session has ended; sign in again")
    return judge_stored(read, key, now)


async def read_after_lost_race(
    uow: RequestUnitOfWork, tx: Transaction, key: RequestKey | None
) -> RequestRead:
    """Another request under the key committed its record first: read it again (`uow` fresh, its
    snapshot sees the winner's rows) and raise what it decides (its stored answer, in flight, or
    reused). The read, for a caller that goes on to the winner's transaction."""
    now = uow.clock.now()
    read = await uow.requests.read(
        tx.user_id, now=now, session_id=None, key=key, key_hash=tx.idempotency_key_hash
    )
    judge_stored(read, key, now)
    return read


def bound_user(user: User | None) -> User:
    """The user read, who must exist and have a Deriv account bound."""
    if user is None:
        raise TransactionNotFound("no such user", field="user_id")
    if user.deriv_login_id is None:
        raise DerivAccountNotBound("bind your Deriv account first", field="deriv_login_id")
    return user
