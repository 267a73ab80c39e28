"""The sagas' decision table, with no I/O: what happens next, from what is stored."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from application.payments.decisions import (
    DEPOSIT_RULES,
    WITHDRAWAL_RULES,
    Action,
    SagaPolicy,
    SagaView,
    Step,
    arms_status_query,
    decide,
    next_due,
)
from application.payments.ports import StepRecord
from domain.payments.status import TRANSITIONS, TransactionType
from domain.payments.status import TransactionStatus as S
from workers.sagas import ENTERED_ONLY_BY_THE_SAGA, QUIET_STATUSES

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
POLICY = SagaPolicy()
DEPOSIT = TransactionType.DEPOSIT
WITHDRAWAL = TransactionType.WITHDRAWAL


def step(name: Step, attempts: int = 1, ago: float = 0.0) -> dict[str, StepRecord]:
    at = NOW - timedelta(seconds=ago)
    return {name.value: StepRecord(name.value, attempts, at, at)}


def view(type_: TransactionType, status: S, *, age: float = 0.0, **evidence: object) -> SagaView:
    return SagaView(
        type=type_,
        status=status,
        unknown_step=evidence.pop("unknown_step", None),  # type: ignore[arg-type]
        updated_at=NOW - timedelta(seconds=age),
        now=NOW,
        **evidence,  # type: ignore[arg-type]
    )


def test_a_new_deposit_sends_its_stk_push() -> None:
    assert decide(view(DEPOSIT, S.PENDING), POLICY).action is Action.SEND_STK_PUSH


def test_a_push_in_flight_is_left_alone_and_a_lost_one_is_marked_unknown() -> None:
    in_flight = view(DEPOSIT, S.PENDING, steps=step(Step.STK_PUSH, ago=5))
    lost = view(DEPOSIT, S.PENDING, steps=step(Step.STK_PUSH, ago=31))
    assert decide(in_flight, POLICY).action is Action.WAIT
    assert decide(lost, POLICY).action is Action.MARK_STK_UNKNOWN


def test_a_lost_push_answer_is_looked_for_in_m_pesa_s_records_then_left_to_people() -> None:
    unknown = view(DEPOSIT, S.OUTCOME_UNKNOWN, unknown_step=S.PENDING)
    assert decide(unknown, POLICY).action is Action.FIND_LOST_PUSH
    looked = view(DEPOSIT, S.OUTCOME_UNKNOWN, unknown_step=S.PENDING, steps=step(Step.PUSH_LOOKUP, ago=5))
    assert decide(looked, POLICY).action is Action.WAIT
    assert next_due(looked, POLICY) == NOW + POLICY.query_interval - timedelta(seconds=5)
    again = view(DEPOSIT, S.OUTCOME_UNKNOWN, unknown_step=S.PENDING, steps=step(Step.PUSH_LOOKUP, ago=15))
    assert decide(again, POLICY).action is Action.FIND_LOST_PUSH
    spent = step(Step.PUSH_LOOKUP, attempts=POLICY.max_attempts, ago=15)
    exhausted = decide(view(DEPOSIT, S.OUTCOME_UNKNOWN, unknown_step=S.PENDING, steps=spent), POLICY)
    assert exhausted.action is Action.REVIEW and "did not give" in exhausted.reason


@pytest.mark.parametrize(
    ("evidence", "age", "action"),
    [
        ("CONFIRMED", 0, Action.CREDIT_DEPOSIT),
        ("FAILED", 0, Action.FAIL_DEPOSIT),
        ("REVIEW", 0, Action.REVIEW),
        ("SUCCEEDED", 0, Action.CONFIRM_STK),  # a callback is cross-checked by STK Query
        ("SENT", 10, Action.WAIT),  # waiting for the callback
        ("SENT", 61, Action.CONFIRM_STK),  # no callback in time
    ],
)
def test_awaiting_mpesa_follows_the_evidence(evidence: str, age: float, action: Action) -> None:
    assert decide(view(DEPOSIT, S.AWAITING_MPESA, age=age, mpesa_request=evidence), POLICY).action is action


def test_stk_queries_are_spaced_and_bounded() -> None:
    recent = view(
        DEPOSIT, S.AWAITING_MPESA, age=100, mpesa_request="SENT", steps=step(Step.STK_QUERY, 1, ago=3)
    )
    spent = view(
        DEPOSIT, S.AWAITING_MPESA, age=100, mpesa_request="SENT", steps=step(Step.STK_QUERY, 5, ago=60)
    )
    assert decide(recent, POLICY).action is Action.WAIT
    assert decide(spent, POLICY).action is Action.REVIEW


def test_a_paid_deposit_funds_deriv_and_waits_while_the_float_is_low() -> None:
    assert decide(view(DEPOSIT, S.MPESA_CONFIRMED), POLICY).action is Action.SEND_DERIV_TRANSFER
    waiting = view(DEPOSIT, S.MPESA_CONFIRMED, steps=step(Step.FLOAT_WAIT, ago=1))
    assert decide(waiting, POLICY).action is Action.WAIT


def test_a_transfer_is_only_ever_resolved_by_its_id_never_failed() -> None:
    fresh = view(DEPOSIT, S.DERIV_TRANSFER_SENT, age=1, steps=step(Step.DERIV_TRANSFER, ago=1))
    lost = view(DEPOSIT, S.DERIV_TRANSFER_SENT, age=40, steps=step(Step.DERIV_TRANSFER, ago=40))
    unknown = view(
        DEPOSIT,
        S.OUTCOME_UNKNOWN,
        unknown_step=S.DERIV_TRANSFER_SENT,
        steps=step(Step.DERIV_TRANSFER, ago=20),
    )
    assert decide(fresh, POLICY).action is Action.WAIT
    assert decide(lost, POLICY).action is Action.RESOLVE_DERIV_TRANSFER
    assert decide(unknown, POLICY).action is Action.RESOLVE_DERIV_TRANSFER
    # every action a deposit can take after the customer paid keeps the money: never FAIL_DEPOSIT
    for status in (S.MPESA_CONFIRMED, S.DERIV_TRANSFER_SENT):
        for ago in (0, 100, 10_000):
            for attempts in (0, 1, 10):
                steps = step(Step.DERIV_TRANSFER, attempts, ago=ago) if attempts else {}
                action = decide(view(DEPOSIT, status, age=ago, steps=steps), POLICY).action
                assert action in {
                    Action.WAIT,
                    Action.SEND_DERIV_TRANSFER,
                    Action.RESOLVE_DERIV_TRANSFER,
                    Action.REVIEW,
                }


@pytest.mark.parametrize(
    ("evidence", "accepted", "age", "action"),
    [
        ("CONFIRMED", True, 0, Action.COMPLETE_WITHDRAWAL),
        ("FAILED", True, 0, Action.START_REFUND),
        ("REVIEW", True, 0, Action.REVIEW),
        ("SUCCEEDED", True, 0, Action.CONFIRM_B2C),
        ("UNKNOWN", True, 0, Action.CONFIRM_B2C),  # queue timeout: Transaction Status
        ("SENT", True, 10, Action.WAIT),
        ("SENT", True, 61, Action.CONFIRM_B2C),
        ("SENT", False, 0, Action.SEND_B2C),  # never accepted: same OriginatorConversationID again
    ],
)
def test_a_b2c_payout_follows_the_evidence(evidence: str, accepted: bool, age: float, action: Action) -> None:
    v = view(
        WITHDRAWAL,
        S.MPESA_DISBURSEMENT_SENT,
        age=age,
        mpesa_disbursement=evidence,
        disbursement_accepted=accepted,
    )
    assert decide(v, POLICY).action is action


def armed(ago: float) -> dict[str, StepRecord]:
    """Step.B2C_QUERY as the B2C answer's commit arms it: no attempt counted, to be asked within
    one query interval."""
    at = NOW - timedelta(seconds=ago)
    until = at + POLICY.query_interval
    return {Step.B2C_QUERY.value: StepRecord(Step.B2C_QUERY.value, 0, at, at, retry_at=until)}


@pytest.mark.parametrize("evidence", ["SUCCEEDED", "UNKNOWN"])
def test_a_b2c_answer_that_calls_for_transaction_status_arms_it_once(evidence: str) -> None:
    def payout(steps: dict[str, StepRecord], status: S = S.MPESA_DISBURSEMENT_SENT) -> SagaView:
        return view(
            WITHDRAWAL,
            status,
            mpesa_disbursement=evidence,
            disbursement_accepted=True,
            steps=steps,
            unknown_step=S.MPESA_DISBURSEMENT_SENT if status is S.OUTCOME_UNKNOWN else None,
        )

    assert arms_status_query(payout({}), POLICY)
    assert arms_status_query(payout({}, S.OUTCOME_UNKNOWN), POLICY)
    # a query started already (asked before the answer came, or armed): its own rules go on
    assert not arms_status_query(payout(step(Step.B2C_QUERY, attempts=1, ago=1)), POLICY)
    assert not arms_status_query(payout(armed(ago=1)), POLICY)
    # armed: asked with nothing written within one query interval; the armed query may leave as
    # late as that, so the counted one waits a whole interval more
    interval = POLICY.query_interval.total_seconds()
    assert decide(payout(armed(ago=0)), POLICY).action is Action.CONFIRM_B2C_ARMED
    assert decide(payout(armed(ago=interval - 1)), POLICY).action is Action.CONFIRM_B2C_ARMED
    assert decide(payout(armed(ago=interval)), POLICY).action is Action.WAIT
    assert decide(payout(armed(ago=2 * interval - 1)), POLICY).action is Action.WAIT
    assert decide(payout(armed(ago=2 * interval)), POLICY).action is Action.CONFIRM_B2C
    assert next_due(payout(armed(ago=interval)), POLICY) == NOW + POLICY.query_interval
    assert decide(payout(armed(ago=1), S.OUTCOME_UNKNOWN), POLICY).action is Action.CONFIRM_B2C_ARMED
    # a query whose attempts a person reset (attempts 0, no retry time) is not armed: it waits
    reset = {Step.B2C_QUERY.value: StepRecord(Step.B2C_QUERY.value, 0, NOW, NOW)}
    assert decide(payout(reset), POLICY).action is Action.WAIT


@pytest.mark.parametrize("evidence", ["SENT", "CONFIRMED", "FAILED", "REVIEW"])
def test_only_a_result_to_cross_check_arms_transaction_status(evidence: str) -> None:
    v = view(
        WITHDRAWAL,
        S.MPESA_DISBURSEMENT_SENT,
        age=120,  # SENT this old asks Transaction Status too, but no answer came to arm it
        mpesa_disbursement=evidence,
        disbursement_accepted=True,
    )
    assert not arms_status_query(v, POLICY)
    assert not arms_status_query(view(DEPOSIT, S.AWAITING_MPESA, mpesa_request="SUCCEEDED"), POLICY)


def test_a_b2c_m_pesa_never_accepted_is_sent_again_once_transaction_status_never_found_it() -> None:
    queried_out = {**step(Step.B2C, attempts=1, ago=5), **step(Step.B2C_QUERY, attempts=POLICY.max_attempts)}

    def decided(*, accepted: bool, sends: int, evidence: str = "SENT") -> Action:
        steps = {**queried_out, **step(Step.B2C, attempts=sends, ago=5)}
        v = view(
            WITHDRAWAL,
            S.MPESA_DISBURSEMENT_SENT,
            age=120,
            mpesa_disbursement=evidence,
            disbursement_accepted=accepted,
            steps=steps,
        )
        return decide(v, POLICY).action

    # not accepted, sends left: the same OriginatorConversationID again, not a person (it was REVIEW)
    assert decided(accepted=False, sends=1) is Action.SEND_B2C
    assert decided(accepted=False, sends=POLICY.max_attempts) is Action.REVIEW  # sends used up
    assert decided(accepted=True, sends=1) is Action.REVIEW  # accepted: its outcome is M-Pesa's
    assert decided(accepted=True, sends=1, evidence="SUCCEEDED") is Action.REVIEW


def test_a_refund_already_started_is_resolved_by_its_id() -> None:
    v = view(
        WITHDRAWAL, S.MPESA_DISBURSEMENT_SENT, mpesa_disbursement="FAILED", steps=step(Step.REFUND, ago=40)
    )
    assert decide(v, POLICY).action is Action.RESOLVE_REFUND


def test_a_withdrawal_debit_with_a_lost_answer_is_resolved_without_the_code() -> None:
    v = view(WITHDRAWAL, S.AWAITING_WITHDRAWAL_CODE, age=40, deriv_withdrawal="SENT")
    assert decide(v, POLICY).action is Action.RESOLVE_DERIV_WITHDRAWAL


def test_withdrawal_lookups_are_spaced_like_queries() -> None:
    just_asked = view(
        WITHDRAWAL,
        S.AWAITING_WITHDRAWAL_CODE,
        age=40,
        deriv_withdrawal="SENT",
        steps=step(Step.DERIV_WITHDRAWAL, ago=5),
    )
    assert decide(just_asked, POLICY).action is Action.WAIT


def deferred(name: Step, *, retry_in: float, attempts: int = 0, ago: float = 0.0) -> dict[str, StepRecord]:
    at = NOW - timedelta(seconds=ago)
    return {name.value: StepRecord(name.value, attempts, at, at, retry_at=NOW + timedelta(seconds=retry_in))}


def test_a_rate_limited_transfer_waits_for_its_retry_time_however_stale_it_looks() -> None:
    waiting = view(DEPOSIT, S.DERIV_TRANSFER_SENT, age=600, steps=deferred(Step.DERIV_TRANSFER, retry_in=5))
    assert decide(waiting, POLICY).action is Action.WAIT


def test_a_rate_limited_transfer_goes_again_as_soon_as_its_wait_is_over() -> None:
    # not stale (touched 2 s ago), yet nothing is in flight: the call was held back unsent
    over = view(DEPOSIT, S.DERIV_TRANSFER_SENT, age=2, steps=deferred(Step.DERIV_TRANSFER, retry_in=0, ago=2))
    assert decide(over, POLICY).action is Action.RESOLVE_DERIV_TRANSFER


def test_deferrals_do_not_count_towards_review() -> None:
    # four deferred calls gave their attempts back: one used attempt is far from the bound
    v = view(
        DEPOSIT, S.DERIV_TRANSFER_SENT, age=60, steps=deferred(Step.DERIV_TRANSFER, retry_in=-1, attempts=1)
    )
    assert decide(v, POLICY).action is Action.RESOLVE_DERIV_TRANSFER


@pytest.mark.parametrize(
    ("status", "type_", "step_", "extra", "action"),
    [
        (S.OUTCOME_UNKNOWN, DEPOSIT, Step.DERIV_TRANSFER, {"unknown_step": S.DERIV_TRANSFER_SENT},
         Action.RESOLVE_DERIV_TRANSFER),
        (S.OUTCOME_UNKNOWN, WITHDRAWAL, Step.DERIV_WITHDRAWAL, {"unknown_step": S.AWAITING_WITHDRAWAL_CODE},
         Action.RESOLVE_DERIV_WITHDRAWAL),
        (S.MPESA_DISBURSEMENT_SENT, WITHDRAWAL, Step.REFUND, {"mpesa_disbursement": "FAILED"},
         Action.RESOLVE_REFUND),
    ],
)  # fmt: skip
def test_every_deferred_deriv_call_waits_then_goes_again(
    status: S, type_: TransactionType, step_: Step, extra: dict[str, object], action: Action
) -> None:
    before = view(type_, status, age=600, steps=deferred(step_, retry_in=3, ago=600), **extra)
    after = view(type_, status, age=600, steps=deferred(step_, retry_in=-0.001, ago=600), **extra)
    assert decide(before, POLICY).action is Action.WAIT
    assert decide(after, POLICY).action is action


def test_an_unused_code_expires_into_a_failed_withdrawal() -> None:
    assert decide(view(WITHDRAWAL, S.AWAITING_WITHDRAWAL_CODE, age=100), POLICY).action is Action.WAIT
    assert (
        decide(view(WITHDRAWAL, S.AWAITING_WITHDRAWAL_CODE, age=3601), POLICY).action
        is Action.FAIL_WITHDRAWAL
    )


@pytest.mark.parametrize("status", [S.COMPLETED, S.FAILED, S.REVERSED, S.NEEDS_REVIEW])
@pytest.mark.parametrize("type_", [DEPOSIT, WITHDRAWAL])
def test_finished_and_reviewed_transactions_are_never_touched(status: S, type_: TransactionType) -> None:
    assert decide(view(type_, status, age=10**6), POLICY).action is Action.WAIT


@pytest.mark.parametrize(("type_", "rules"), [(DEPOSIT, DEPOSIT_RULES), (WITHDRAWAL, WITHDRAWAL_RULES)])
def test_every_rule_acts_on_a_status_the_flow_has(type_: TransactionType, rules: tuple) -> None:  # type: ignore[type-arg]
    statuses = {s for pair in TRANSITIONS[type_] for s in pair}
    assert {rule[0] for rule in rules} <= statuses


@pytest.mark.parametrize(("type_", "rules"), [(DEPOSIT, DEPOSIT_RULES), (WITHDRAWAL, WITHDRAWAL_RULES)])
def test_every_review_decision_has_a_legal_way_to_needs_review(type_: TransactionType, rules: tuple) -> None:  # type: ignore[type-arg]
    # The runner goes straight to NEEDS_REVIEW, or through OUTCOME_UNKNOWN when that is the only way.
    legal = TRANSITIONS[type_]
    for status, _guard, action, _why in rules:
        if action is Action.REVIEW:
            direct = (status, S.NEEDS_REVIEW) in legal
            via_unknown = (status, S.OUTCOME_UNKNOWN) in legal or status is S.OUTCOME_UNKNOWN
            assert direct or via_unknown, status


# --- when time alone makes a waiting transaction act (the sweeper skips it until then) ---------


def test_a_transfer_in_flight_is_due_when_its_call_grace_runs_out() -> None:
    v = view(DEPOSIT, S.DERIV_TRANSFER_SENT, age=1, steps=step(Step.DERIV_TRANSFER, ago=1))
    assert next_due(v, POLICY) == NOW - timedelta(seconds=1) + POLICY.call_grace


def test_a_deferred_call_is_due_at_its_retry_time() -> None:
    v = view(DEPOSIT, S.DERIV_TRANSFER_SENT, age=1, steps=deferred(Step.DERIV_TRANSFER, retry_in=7, ago=1))
    assert next_due(v, POLICY) == NOW + timedelta(seconds=7)


def test_a_push_waiting_for_its_callback_is_due_when_stk_query_may_ask() -> None:
    v = view(DEPOSIT, S.AWAITING_MPESA, age=10, mpesa_request="SENT", steps=step(Step.STK_PUSH, ago=10))
    assert next_due(v, POLICY) == NOW - timedelta(seconds=10) + POLICY.stk_callback_wait


def test_a_withdrawal_waiting_for_its_code_is_due_when_the_code_expires() -> None:
    v = view(WITHDRAWAL, S.AWAITING_WITHDRAWAL_CODE, age=100)
    assert next_due(v, POLICY) == NOW - timedelta(seconds=100) + POLICY.withdrawal_code_ttl


def test_what_only_a_person_can_move_is_never_due() -> None:
    assert next_due(view(DEPOSIT, S.NEEDS_REVIEW, age=10), POLICY) is None


@pytest.mark.parametrize(
    "v",
    [
        view(DEPOSIT, S.PENDING, steps=step(Step.STK_PUSH, ago=3)),
        view(DEPOSIT, S.AWAITING_MPESA, age=3, mpesa_request="SUCCEEDED", steps=step(Step.STK_QUERY, ago=3)),
        view(DEPOSIT, S.MPESA_CONFIRMED, age=3, steps=step(Step.FLOAT_WAIT, ago=3)),
        view(WITHDRAWAL, S.AWAITING_WITHDRAWAL_CODE, age=40, deriv_withdrawal="SENT",
             steps=step(Step.DERIV_WITHDRAWAL, ago=2)),
        view(WITHDRAWAL, S.MPESA_DISBURSEMENT_SENT, age=1, mpesa_disbursement="SENT",
             disbursement_accepted=True),
    ],
)  # fmt: skip
def test_a_waiting_transaction_waits_right_up_to_its_due_time_and_acts_at_it(v: SagaView) -> None:
    assert decide(v, POLICY).action is Action.WAIT
    due = next_due(v, POLICY)
    assert due is not None
    assert decide(replace(v, now=due - timedelta(microseconds=1)), POLICY).action is Action.WAIT
    assert decide(replace(v, now=due), POLICY).action is not Action.WAIT


# --- which status changes wake the saga (workers.sagas) ------------------------------------


@pytest.mark.parametrize("status", sorted(QUIET_STATUSES - ENTERED_ONLY_BY_THE_SAGA))
def test_a_status_change_wakes_nothing_where_a_fresh_transaction_has_nothing_to_do(status: str) -> None:
    for type_ in (DEPOSIT, WITHDRAWAL):
        assert decide(view(type_, S(status)), POLICY).action is Action.WAIT


def test_a_status_change_someone_else_made_into_a_state_with_work_wakes_the_saga() -> None:
    # ConfirmWithdrawal (the API) books the Deriv debit: the B2C payout is the saga's to send now
    fresh = view(WITHDRAWAL, S.DERIV_WITHDRAWAL_DONE)
    assert decide(fresh, POLICY).action is Action.SEND_B2C
    assert S.DERIV_WITHDRAWAL_DONE.value not in QUIET_STATUSES
    assert S.OUTCOME_UNKNOWN.value not in QUIET_STATUSES
