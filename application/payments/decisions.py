"""The sagas' decisions: what to do next with a transaction, from what is stored about it.

Pure: no I/O, no clock of its own. `decide(view, policy)` reads the transaction's status,
its evidence records and the saga-step journal, and returns one Action. The worker
(application.payments.saga) executes it and asks again. Because the decision is derived
from committed state only, a duplicate, late, reordered or lost wake-up event, a crash or a
second worker running the same transaction all lead to the same next step.

One table per saga (DEPOSIT_RULES, WITHDRAWAL_RULES): the first rule whose status matches
and whose guard holds wins. Guards only look at evidence, step attempts and ages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum

from application.payments.ports import StepRecord
from domain.payments.attachments import EvidenceStatus as E
from domain.payments.status import TransactionStatus as S
from domain.payments.status import TransactionType


class Action(StrEnum):
    WAIT = "WAIT"  # nothing to do now (waiting for a callback, a person, or a call in flight)
    # deposit
    SEND_STK_PUSH = "SEND_STK_PUSH"
    MARK_STK_UNKNOWN = "MARK_STK_UNKNOWN"  # a push was started and its answer lost
    FIND_LOST_PUSH = "FIND_LOST_PUSH"  # its CheckoutRequestID from M-Pesa's records (read-only)
    CONFIRM_STK = "CONFIRM_STK"  # STK Query: cross-check a callback, or ask when none came
    CREDIT_DEPOSIT = "CREDIT_DEPOSIT"  # book the KES received and the conversion to USD
    FAIL_DEPOSIT = "FAIL_DEPOSIT"  # M-Pesa says not paid
    SEND_DERIV_TRANSFER = "SEND_DERIV_TRANSFER"  # reserve the agent float, record, send
    RESOLVE_DERIV_TRANSFER = "RESOLVE_DERIV_TRANSFER"  # ask the gateway again, same transfer id
    # withdrawal
    FAIL_WITHDRAWAL = "FAIL_WITHDRAWAL"  # no money moved (code never sent, or expired)
    RESOLVE_DERIV_WITHDRAWAL = "RESOLVE_DERIV_WITHDRAWAL"  # resolve-only lookup, never a new debit
    SEND_B2C = "SEND_B2C"  # reserve the M-Pesa float, record, send (or re-send, same id)
    CONFIRM_B2C = "CONFIRM_B2C"  # Transaction Status query
    # Transaction Status armed by the commit of the B2C answer that calls for it: asked, nothing written
    CONFIRM_B2C_ARMED = "CONFIRM_B2C_ARMED"
    COMPLETE_WITHDRAWAL = "COMPLETE_WITHDRAWAL"
    START_REFUND = "START_REFUND"  # B2C failed for good: undo the bookings, send the USD back
    RESOLVE_REFUND = "RESOLVE_REFUND"  # the refund transfer's answer was lost: ask again, same id
    # deposit refund (approved by two people; the intent committed with the approval)
    SEND_REFUND_B2C = "SEND_REFUND_B2C"  # the one send of the refund (again only if held back unsent)
    CONFIRM_REFUND_B2C = "CONFIRM_REFUND_B2C"  # Transaction Status: a refund is resolved, never resent
    COMPLETE_REFUND = "COMPLETE_REFUND"  # paid: REVERSED
    REFUND_NOT_PAID = "REFUND_NOT_PAID"  # M-Pesa did not pay it: back to a person
    # both
    REVIEW = "REVIEW"  # bounded attempts exhausted or contradictory evidence: a person decides


class Step(StrEnum):
    """Names in the saga-step journal (saga_steps.step)."""

    STK_PUSH = "stk_push"
    STK_QUERY = "stk_query"
    PUSH_LOOKUP = "push_lookup"  # a lost push looked for in M-Pesa's records
    DERIV_TRANSFER = "deriv_transfer"
    DERIV_WITHDRAWAL = "deriv_withdrawal"
    B2C = "b2c"
    B2C_QUERY = "b2c_query"
    REFUND = "refund"
    FLOAT_WAIT = "float_wait"
    REFUND_B2C = "refund_b2c"
    REFUND_B2C_QUERY = "refund_b2c_query"


@dataclass(frozen=True, slots=True)
class SagaPolicy:
    """The timeouts and bounds of both sagas (settings feed them)."""

    call_grace: timedelta = timedelta(seconds=30)  # a started call younger than this is in flight
    stk_callback_wait: timedelta = timedelta(seconds=60)  # then ask STK Query
    b2c_result_wait: timedelta = timedelta(seconds=60)  # then ask Transaction Status
    query_interval: timedelta = timedelta(seconds=15)  # between two queries of one kind
    max_attempts: int = 5  # per step, then review
    withdrawal_code_ttl: timedelta = timedelta(seconds=3600)  # Deriv's code lifetime
    float_retry: timedelta = timedelta(seconds=30)  # a float too low: try again after
    deferral_cap: timedelta = timedelta(minutes=5)  # longest wait a rate limit can ask of a step


@dataclass(frozen=True, slots=True)
class SagaView:
    """What decide() needs to know about one transaction, read from storage."""

    type: TransactionType
    status: S
    unknown_step: S | None  # while OUTCOME_UNKNOWN: the step whose answer was lost
    updated_at: datetime
    now: datetime
    mpesa_request: str | None = None
    mpesa_disbursement: str | None = None
    disbursement_accepted: bool = False  # Daraja returned a ConversationID
    deriv_transfer: str | None = None
    deriv_withdrawal: str | None = None
    steps: Mapping[str, StepRecord] = field(default_factory=dict)

    def age(self) -> timedelta:
        return self.now - self.updated_at

    def step(self, step: Step) -> StepRecord | None:
        return self.steps.get(step.value)

    def attempts(self, step: Step) -> int:
        record = self.step(step)
        return record.attempts if record else 0

    def since(self, step: Step) -> timedelta | None:
        record = self.step(step)
        return None if record is None else self.now - record.updated_at


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str = ""


Guard = Callable[[SagaView, SagaPolicy], bool]
Rule = tuple[S, Guard, Action, str]


def _always(v: SagaView, p: SagaPolicy) -> bool:
    return True


def _exhausted(step: Step) -> Guard:
    return lambda v, p: v.attempts(step) >= p.max_attempts


def _due(step: Step, after: Callable[[SagaPolicy], timedelta]) -> Guard:
    """The step may run again: never run, its deferral is over, or its last attempt is older
    than `after`."""

    def guard(v: SagaView, p: SagaPolicy) -> bool:
        record = v.step(step)
        if record is None:
            return True
        if record.retry_at is not None:
            return v.now >= record.retry_at
        return v.now - record.updated_at >= after(p)

    return guard


def _deferral_over(step: Step) -> Guard:
    """The step's call was held back unsent (rate limit) and its wait is over: nothing is in flight."""

    def guard(v: SagaView, p: SagaPolicy) -> bool:
        record = v.step(step)
        return record is not None and record.retry_at is not None and v.now >= record.retry_at

    return guard


def _all(*guards: Guard) -> Guard:
    return lambda v, p: all(g(v, p) for g in guards)


def _any(*guards: Guard) -> Guard:
    return lambda v, p: any(g(v, p) for g in guards)


def armed_until(record: StepRecord | None) -> datetime | None:
    """For a query step armed by the commit of the evidence that calls for it (arm_status_query):
    the end of its window (`retry_at`), before which the worker that commit wakes asks it, with no
    attempt counted. None for any other step. (Only query steps are armed, and they are never
    deferred: no attempt and a retry time mean armed.)"""
    return None if record is None or record.attempts != 0 else record.retry_at


def _armed(step: Step) -> Guard:
    """`step` is armed and its window open: its query is read-only, so the woken worker asks it
    writing nothing."""

    def guard(v: SagaView, p: SagaPolicy) -> bool:
        until = armed_until(v.step(step))
        return until is not None and v.now < until

    return guard


def _query_due(step: Step) -> Guard:
    """`_due` by the query interval, for a query step that may be armed: the armed query may have
    left as late as the end of its window, so a counted one follows a whole interval after that."""
    due = _due(step, lambda p: p.query_interval)

    def guard(v: SagaView, p: SagaPolicy) -> bool:
        until = armed_until(v.step(step))
        return due(v, p) if until is None else v.now >= until + p.query_interval

    return guard


def _evidence(attr: str, *statuses: E | None) -> Guard:
    wanted = {None if s is None else s.value for s in statuses}
    return lambda v, p: getattr(v, attr) in wanted


def _stale(v: SagaView, p: SagaPolicy) -> bool:
    """Nobody has touched the transaction for longer than a call may take."""
    return v.age() >= p.call_grace


def _unknown_at(step: S) -> Guard:
    return lambda v, p: v.unknown_step is step


def _float_due(v: SagaView, p: SagaPolicy) -> bool:
    since = v.since(Step.FLOAT_WAIT)
    return since is None or since >= p.float_retry


_stk = "mpesa_request"
_NO_STEP = StepRecord("", 0, datetime.min, datetime.min)
_b2c = "mpesa_disbursement"

DEPOSIT_RULES: tuple[Rule, ...] = (
    # PENDING: push once; a push started and never recorded has an unknown outcome.
    (S.PENDING, lambda v, p: v.step(Step.STK_PUSH) is None, Action.SEND_STK_PUSH, "send the STK push"),
    (
        S.PENDING,
        _due(Step.STK_PUSH, lambda p: p.call_grace),
        Action.MARK_STK_UNKNOWN,
        "the STK push was sent and its answer lost",
    ),
    # AWAITING_MPESA: the callback inbox writes the evidence; we cross-check or ask.
    (S.AWAITING_MPESA, _evidence(_stk, E.CONFIRMED), Action.CREDIT_DEPOSIT, "M-Pesa payment confirmed"),
    (S.AWAITING_MPESA, _evidence(_stk, E.FAILED), Action.FAIL_DEPOSIT, "M-Pesa payment not made"),
    (S.AWAITING_MPESA, _evidence(_stk, E.REVIEW), Action.REVIEW, "M-Pesa evidence contradicts itself"),
    (S.AWAITING_MPESA, _exhausted(Step.STK_QUERY), Action.REVIEW, "STK Query attempts exhausted"),
    (
        S.AWAITING_MPESA,
        _all(_evidence(_stk, E.SUCCEEDED), _due(Step.STK_QUERY, lambda p: p.query_interval)),
        Action.CONFIRM_STK,
        "cross-check the callback with STK Query",
    ),
    (
        S.AWAITING_MPESA,
        _all(
            _evidence(_stk, E.SENT),
            lambda v, p: v.age() >= p.stk_callback_wait,
            _due(Step.STK_QUERY, lambda p: p.query_interval),
        ),
        Action.CONFIRM_STK,
        "no callback in time: ask STK Query",
    ),
    # MPESA_CONFIRMED: fund the Deriv account (waits while the agent float is too low).
    (S.MPESA_CONFIRMED, _exhausted(Step.DERIV_TRANSFER), Action.REVIEW, "Deriv transfer attempts exhausted"),
    (S.MPESA_CONFIRMED, _float_due, Action.SEND_DERIV_TRANSFER, "fund the user's Deriv account"),
    # DERIV_TRANSFER_SENT: a transfer in flight elsewhere, or lost by a crash: same id again.
    (
        S.DERIV_TRANSFER_SENT,
        _exhausted(Step.DERIV_TRANSFER),
        Action.REVIEW,
        "Deriv transfer attempts exhausted",
    ),
    (
        S.DERIV_TRANSFER_SENT,
        _any(
            _deferral_over(Step.DERIV_TRANSFER),
            _all(_stale, _due(Step.DERIV_TRANSFER, lambda p: p.call_grace)),
        ),
        Action.RESOLVE_DERIV_TRANSFER,
        "the Deriv transfer's answer was lost",
    ),
    # OUTCOME_UNKNOWN, by the step whose answer was lost.
    # The push's answer (its CheckoutRequestID) was lost: M-Pesa's list of payments under the
    # push's AccountReference and a callback parked for want of the id may give it back.
    (
        S.OUTCOME_UNKNOWN,
        _all(_unknown_at(S.PENDING), _exhausted(Step.PUSH_LOOKUP)),
        Action.REVIEW,
        "the STK push's answer was lost: M-Pesa's records did not give its CheckoutRequestID back",
    ),
    (
        S.OUTCOME_UNKNOWN,
        _all(_unknown_at(S.PENDING), _due(Step.PUSH_LOOKUP, lambda p: p.query_interval)),
        Action.FIND_LOST_PUSH,
        "the STK push's answer was lost: look for its payment under its reference",
    ),
    (
        S.OUTCOME_UNKNOWN,
        _all(_unknown_at(S.AWAITING_MPESA), _exhausted(Step.STK_QUERY)),
        Action.REVIEW,
        "STK Query attempts exhausted",
    ),
    (
        S.OUTCOME_UNKNOWN,
        _all(_unknown_at(S.AWAITING_MPESA), _evidence(_stk, E.CONFIRMED)),
        Action.CREDIT_DEPOSIT,
        "M-Pesa payment confirmed",
    ),
    (
        S.OUTCOME_UNKNOWN,
        _all(_unknown_at(S.AWAITING_MPESA), _evidence(_stk, E.FAILED)),
        Action.FAIL_DEPOSIT,
        "M-Pesa payment not made",
    ),
    (
        S.OUTCOME_UNKNOWN,
        _all(_unknown_at(S.AWAITING_MPESA), _due(Step.STK_QUERY, lambda p: p.query_interval)),
        Action.CONFIRM_STK,
        "resolve the M-Pesa payment by STK Query",
    ),
    (
        S.OUTCOME_UNKNOWN,
        _all(_unknown_at(S.DERIV_TRANSFER_SENT), _exhausted(Step.DERIV_TRANSFER)),
        Action.REVIEW,
        "Deriv transfer attempts exhausted",
    ),
    (
        S.OUTCOME_UNKNOWN,
        _all(_unknown_at(S.DERIV_TRANSFER_SENT), _due(Step.DERIV_TRANSFER, lambda p: p.query_interval)),
        Action.RESOLVE_DERIV_TRANSFER,
        "resolve the Deriv transfer through the gateway",
    ),
)

# NEEDS_REVIEW waits for a person, except for a deposit's refund two people approved: its B2C is
# sent once; an answer lost after the send is resolved by Transaction Status, never sent again.
_refund_status = S.NEEDS_REVIEW
DEPOSIT_RULES += (
    (_refund_status, _evidence(_b2c, E.CONFIRMED), Action.COMPLETE_REFUND, "the refund was paid"),
    (_refund_status, _evidence(_b2c, E.FAILED), Action.REFUND_NOT_PAID, "the refund was not paid"),
    (
        _refund_status,
        _all(_evidence(_b2c, E.SENT), lambda v, p: v.step(Step.REFUND_B2C) is None),
        Action.SEND_REFUND_B2C,
        "send the approved refund",
    ),
    (
        _refund_status,
        _all(_evidence(_b2c, E.SENT), _deferral_over(Step.REFUND_B2C)),
        Action.SEND_REFUND_B2C,
        "the refund was held back unsent: send it now",
    ),
    (
        _refund_status,
        _all(_evidence(_b2c, E.SENT, E.SUCCEEDED, E.UNKNOWN), _exhausted(Step.REFUND_B2C_QUERY)),
        Action.WAIT,
        "Transaction Status never settled the refund: a person decides (retry it)",
    ),
    (
        _refund_status,
        _all(
            _evidence(_b2c, E.SENT),
            lambda v, p: not v.disbursement_accepted,
            lambda v, p: (v.step(Step.REFUND_B2C) or _NO_STEP).retry_at is None,
            _due(Step.REFUND_B2C, lambda p: p.call_grace),
            _due(Step.REFUND_B2C_QUERY, lambda p: p.query_interval),
        ),
        Action.CONFIRM_REFUND_B2C,
        "the refund's answer was lost: ask Transaction Status, never send again",
    ),
    (
        _refund_status,
        _all(
            _evidence(_b2c, E.SUCCEEDED, E.UNKNOWN), _due(Step.REFUND_B2C_QUERY, lambda p: p.query_interval)
        ),
        Action.CONFIRM_REFUND_B2C,
        "cross-check the refund's result with Transaction Status",
    ),
    (
        _refund_status,
        _all(
            _evidence(_b2c, E.SENT),
            lambda v, p: v.disbursement_accepted,
            lambda v, p: v.age() >= p.b2c_result_wait,
            _due(Step.REFUND_B2C_QUERY, lambda p: p.query_interval),
        ),
        Action.CONFIRM_REFUND_B2C,
        "no refund result in time: ask Transaction Status",
    ),
)

WITHDRAWAL_RULES: tuple[Rule, ...] = (
    # PENDING: stored by an earlier InitiateWithdrawal before it asked Deriv for the code (today's
    # stores a withdrawal once the code was sent); still PENDING long after, nothing moved.
    (S.PENDING, _stale, Action.FAIL_WITHDRAWAL, "the withdrawal code was never requested"),
    # AWAITING_WITHDRAWAL_CODE: ConfirmWithdrawal runs the debit inline; a debit recorded as
    # sent and never answered is resolved without the code (resolve-only, never a new debit).
    (
        S.AWAITING_WITHDRAWAL_CODE,
        _exhausted(Step.DERIV_WITHDRAWAL),
        Action.REVIEW,
        "Deriv withdrawal lookups exhausted",
    ),
    (
        S.AWAITING_WITHDRAWAL_CODE,
        _all(
            _evidence("deriv_withdrawal", E.SENT),
            _stale,
            _due(Step.DERIV_WITHDRAWAL, lambda p: p.query_interval),
        ),
        Action.RESOLVE_DERIV_WITHDRAWAL,
        "the Deriv withdrawal's answer was lost",
    ),
    (
        S.AWAITING_WITHDRAWAL_CODE,
        # no debit requested, or one held back unsent (the user may confirm again until the code expires)
        _all(_evidence("deriv_withdrawal", None, E.FAILED), lambda v, p: v.age() >= p.withdrawal_code_ttl),
        Action.FAIL_WITHDRAWAL,
        "the verification code expired unused",
    ),
    (
        S.OUTCOME_UNKNOWN,
        _all(_unknown_at(S.AWAITING_WITHDRAWAL_CODE), _exhausted(Step.DERIV_WITHDRAWAL)),
        Action.REVIEW,
        "Deriv withdrawal lookups exhausted",
    ),
    (
        S.OUTCOME_UNKNOWN,
        _all(
            _unknown_at(S.AWAITING_WITHDRAWAL_CODE), _due(Step.DERIV_WITHDRAWAL, lambda p: p.query_interval)
        ),
        Action.RESOLVE_DERIV_WITHDRAWAL,
        "resolve the Deriv withdrawal through the gateway",
    ),
    # DERIV_WITHDRAWAL_DONE: pay out by B2C (waits while the M-Pesa float is too low).
    (S.DERIV_WITHDRAWAL_DONE, _exhausted(Step.B2C), Action.REVIEW, "B2C attempts exhausted"),
    (S.DERIV_WITHDRAWAL_DONE, _float_due, Action.SEND_B2C, "pay the user by B2C"),
    # MPESA_DISBURSEMENT_SENT (and OUTCOME_UNKNOWN of it): evidence first, then queries.
    *(
        rule
        for status, guard in (
            (S.MPESA_DISBURSEMENT_SENT, _always),
            (S.OUTCOME_UNKNOWN, _unknown_at(S.MPESA_DISBURSEMENT_SENT)),
        )
        for rule in (
            (status, _all(guard, _evidence(_b2c, E.CONFIRMED)), Action.COMPLETE_WITHDRAWAL, "B2C paid"),
            (
                status,
                _all(guard, _evidence(_b2c, E.REVIEW)),
                Action.REVIEW,
                "B2C evidence contradicts itself",
            ),
            (
                status,
                _all(guard, _evidence(_b2c, E.FAILED), lambda v, p: v.step(Step.REFUND) is None),
                Action.START_REFUND,
                "B2C failed: send the USD back to Deriv",
            ),
            (
                status,
                _all(guard, _evidence(_b2c, E.FAILED), _exhausted(Step.REFUND)),
                Action.REVIEW,
                "refund transfer attempts exhausted",
            ),
            (
                status,
                _all(guard, _evidence(_b2c, E.FAILED), _due(Step.REFUND, lambda p: p.call_grace)),
                Action.RESOLVE_REFUND,
                "the refund transfer's answer was lost",
            ),
            (
                status,
                _all(
                    guard,
                    _evidence(_b2c, E.SENT),
                    lambda v, p: not v.disbursement_accepted,
                    _exhausted(Step.B2C),
                ),
                Action.REVIEW,
                "B2C attempts exhausted",
            ),
            (
                status,
                _all(
                    guard,
                    _evidence(_b2c, E.SENT),
                    lambda v, p: not v.disbursement_accepted and v.step(Step.B2C) is None,
                ),
                Action.SEND_B2C,
                "pay the user by B2C (reserved with the debit)",
            ),
            (
                status,
                _all(
                    guard,
                    _evidence(_b2c, E.SENT),
                    lambda v, p: not v.disbursement_accepted,
                    _due(Step.B2C, lambda p: p.call_grace),
                ),
                Action.SEND_B2C,
                "B2C not accepted yet: send again with the same id",
            ),
            (
                # Never accepted (no ConversationID) and Transaction Status never found it: M-Pesa
                # has not got it (one it had would refuse the same id as a duplicate), so it goes
                # again now rather than to a person. Waiting for call_grace let the queries run out
                # first, every time: the soak's payouts stuck in review, unpaid, and a person's
                # RETRY only ran out the queries again.
                status,
                _all(
                    guard,
                    _evidence(_b2c, E.SENT),
                    lambda v, p: not v.disbursement_accepted,
                    _exhausted(Step.B2C_QUERY),
                    lambda v, p: not _exhausted(Step.B2C)(v, p),
                ),
                Action.SEND_B2C,
                "Transaction Status never found the B2C: send again with the same id",
            ),
            (
                status,
                _all(guard, _evidence(_b2c, E.SENT, E.SUCCEEDED, E.UNKNOWN), _exhausted(Step.B2C_QUERY)),
                Action.REVIEW,
                "Transaction Status attempts exhausted",
            ),
            (
                status,
                _all(guard, _evidence(_b2c, E.SUCCEEDED, E.UNKNOWN), _armed(Step.B2C_QUERY)),
                Action.CONFIRM_B2C_ARMED,
                "cross-check the B2C result with Transaction Status, armed with the result",
            ),
            (
                status,
                _all(guard, _evidence(_b2c, E.SUCCEEDED, E.UNKNOWN), _query_due(Step.B2C_QUERY)),
                Action.CONFIRM_B2C,
                "cross-check the B2C result with Transaction Status",
            ),
            (
                status,
                _all(
                    guard,
                    _evidence(_b2c, E.SENT),
                    lambda v, p: v.age() >= p.b2c_result_wait,
                    _due(Step.B2C_QUERY, lambda p: p.query_interval),
                ),
                Action.CONFIRM_B2C,
                "no B2C result in time: ask Transaction Status",
            ),
        )
    ),
)

RULES: Mapping[TransactionType, tuple[Rule, ...]] = {
    TransactionType.DEPOSIT: DEPOSIT_RULES,
    TransactionType.WITHDRAWAL: WITHDRAWAL_RULES,
}


def decide(view: SagaView, policy: SagaPolicy) -> Decision:
    for status, guard, action, reason in RULES[view.type]:
        if status is view.status and guard(view, policy):
            return Decision(action, reason)
    return Decision(Action.WAIT)


def arms_status_query(view: SagaView, policy: SagaPolicy) -> bool:
    """A withdrawal's B2C answer, just recorded, calls for the Transaction Status cross-check and no
    query was started: the answer's own commit arms it (Step.B2C_QUERY, no attempt counted), so the
    worker it wakes asks without a commit of its own (CONFIRM_B2C_ARMED)."""
    return (
        _evidence(_b2c, E.SUCCEEDED, E.UNKNOWN)(view, policy)
        and view.step(Step.B2C_QUERY) is None
        and decide(view, policy).action is Action.CONFIRM_B2C
    )


def next_due(view: SagaView, policy: SagaPolicy) -> datetime | None:
    """For a view decide() says WAIT to: the earliest time at which time alone makes it act, or None
    when only new evidence, an event or a person can. Every time guard compares an age (since the
    transaction's or a step's last update, or an armed step's retry time) with a policy duration, or
    the clock with a step's retry time, so the candidates are exactly those sums: the first one
    decide() acts at is the answer."""
    durations = [value for f in fields(policy) if isinstance(value := getattr(policy, f.name), timedelta)]
    marks = [view.updated_at, *(record.updated_at for record in view.steps.values())]
    candidates = {mark + d for mark in marks for d in durations}
    retries = [record.retry_at for record in view.steps.values() if record.retry_at is not None]
    candidates.update(retries)
    candidates.update(at + d for at in retries for d in durations)  # after an armed query's window
    for at in sorted(c for c in candidates if c > view.now):
        if decide(replace(view, now=at), policy).action is not Action.WAIT:
            return at
    return None
