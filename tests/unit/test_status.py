from __future__ import annotations

import itertools

import pytest

from domain.payments.errors import IllegalTransition
from domain.payments.status import (
    OUTCOME_RESOLUTIONS,
    TERMINAL_STATUSES,
    TRANSITIONS,
    TransactionStatus,
    TransactionType,
    assert_transition,
)

pytestmark = pytest.mark.unit

S = TransactionStatus
DEPOSIT, WITHDRAWAL = TransactionType.DEPOSIT, TransactionType.WITHDRAWAL


def _path_is_legal(type_: TransactionType, *path: TransactionStatus) -> None:
    for from_, to in itertools.pairwise(path):
        assert_transition(type_, from_, to)


def test_deposit_happy_path() -> None:
    _path_is_legal(
        DEPOSIT, S.PENDING, S.AWAITING_MPESA, S.MPESA_CONFIRMED, S.DERIV_TRANSFER_SENT, S.COMPLETED
    )


def test_withdrawal_happy_path() -> None:
    _path_is_legal(
        WITHDRAWAL,
        S.PENDING,
        S.AWAITING_WITHDRAWAL_CODE,
        S.DERIV_WITHDRAWAL_DONE,
        S.MPESA_DISBURSEMENT_SENT,
        S.COMPLETED,
    )


def test_terminal_statuses_have_no_way_out() -> None:
    assert {S.COMPLETED, S.FAILED, S.REVERSED} == TERMINAL_STATUSES
    for pairs in TRANSITIONS.values():
        assert not any(from_ in TERMINAL_STATUSES for from_, _ in pairs)


def test_a_deposit_cannot_fail_once_mpesa_has_paid() -> None:
    for paid in (S.MPESA_CONFIRMED, S.DERIV_TRANSFER_SENT):
        with pytest.raises(IllegalTransition):
            assert_transition(DEPOSIT, paid, S.FAILED)


def test_a_withdrawal_cannot_fail_once_deriv_has_debited() -> None:
    for debited in (S.DERIV_WITHDRAWAL_DONE, S.MPESA_DISBURSEMENT_SENT):
        with pytest.raises(IllegalTransition):
            assert_transition(WITHDRAWAL, debited, S.FAILED)


def test_statuses_of_one_flow_are_illegal_in_the_other() -> None:
    with pytest.raises(IllegalTransition):
        assert_transition(WITHDRAWAL, S.PENDING, S.AWAITING_MPESA)
    with pytest.raises(IllegalTransition):
        assert_transition(DEPOSIT, S.PENDING, S.AWAITING_WITHDRAWAL_CODE)


def test_every_status_a_flow_can_reach_is_reachable_from_pending_and_can_end() -> None:
    for type_, pairs in TRANSITIONS.items():
        reachable, frontier = {S.PENDING}, [S.PENDING]
        while frontier:
            here = frontier.pop()
            for from_, to in pairs:
                if from_ is here and to not in reachable:
                    reachable.add(to)
                    frontier.append(to)
        assert {s for pair in pairs for s in pair} == reachable, type_
        assert TERMINAL_STATUSES <= reachable


def test_outcome_resolutions_are_all_in_the_table() -> None:
    for step, exits in OUTCOME_RESOLUTIONS.items():
        type_ = DEPOSIT if (step, S.OUTCOME_UNKNOWN) in TRANSITIONS[DEPOSIT] else WITHDRAWAL
        assert (step, S.OUTCOME_UNKNOWN) in TRANSITIONS[type_]
        for to in exits:
            assert_transition(type_, S.OUTCOME_UNKNOWN, to)


def test_every_way_into_outcome_unknown_has_its_resolutions_listed() -> None:
    for pairs in TRANSITIONS.values():
        for from_, to in pairs:
            # A retry approved in review goes back to the step its evidence names (one of them).
            if to is S.OUTCOME_UNKNOWN and from_ is not S.NEEDS_REVIEW:
                assert from_ in OUTCOME_RESOLUTIONS
