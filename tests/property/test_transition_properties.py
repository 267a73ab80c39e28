"""The transition table is the whole truth: every listed pair passes, every other pair raises."""

from __future__ import annotations

import itertools

import pytest

from domain.payments.errors import IllegalTransition
from domain.payments.status import TRANSITIONS, TransactionStatus, TransactionType, assert_transition

pytestmark = pytest.mark.property


@pytest.mark.parametrize("type_", list(TransactionType))
def test_every_pair_of_statuses_is_legal_exactly_when_listed(type_: TransactionType) -> None:
    wrong: list[tuple[TransactionStatus, TransactionStatus]] = []
    for from_, to in itertools.product(TransactionStatus, TransactionStatus):
        listed = (from_, to) in TRANSITIONS[type_]
        try:
            assert_transition(type_, from_, to)
            passed = True
        except IllegalTransition:
            passed = False
        if passed != listed:
            wrong.append((from_, to))
    assert wrong == []
    assert len(TransactionStatus) ** 2 - len(TRANSITIONS[type_]) > 100  # most pairs are illegal


def test_no_status_moves_to_itself() -> None:
    for pairs in TRANSITIONS.values():
        assert all(from_ is not to for from_, to in pairs)
