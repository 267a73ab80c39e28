from __future__ import annotations

from datetime import datetime

import pytest

from domain.payments.attachments import EvidenceStatus
from domain.payments.errors import IllegalTransition
from domain.payments.events import (
    MpesaDisbursementCompleted,
    TransactionCompleted,
    TransactionCreated,
    TransactionEvent,
    TransactionStatusChanged,
    WithdrawalInitiated,
)
from domain.payments.idempotency import IdempotencyKey
from domain.payments.status import TransactionStatus
from domain.payments.transaction import Transaction
from domain.shared.events import DomainEvent
from domain.shared.ids import UserId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.phone_number import PhoneNumber
from domain.wallet.errors import CurrencyMismatch, MpesaAmountOutOfRange
from domain.wallet.locked_rate import LockedRate
from domain.wallet.money import Currency, Money

pytestmark = pytest.mark.unit

S = TransactionStatus


def status(tx: Transaction) -> S:
    """The status read afresh: mypy would keep the one an earlier assert narrowed across a transition."""
    return tx.status


def _debited(tx: Transaction, now: datetime) -> Transaction:
    tx.withdrawal_code_sent(now=now)
    tx.deriv_withdrawal_requested(now=now)
    tx.deriv_withdrawal_done(deriv_transaction_id=111, now=now)
    return tx


def _start(rate: LockedRate, amount: Money, now: datetime) -> Transaction:
    user_id = UserId.new()
    return Transaction.start_withdrawal(
        user_id=user_id,
        amount=amount,
        idempotency_key=IdempotencyKey.create("k", scope=str(user_id), operation="withdrawal"),
        locked_rate=rate,
        phone=PhoneNumber("+254112345678"),
        deriv_login_id=DerivLoginId("CR9"),
        now=now,
    )


def test_start_withdrawal_converts_to_whole_shillings(usd_to_kes: LockedRate, now: datetime) -> None:
    tx = _start(usd_to_kes, Money.parse("10.01", Currency.USD), now)
    assert tx.converted_amount == Money.parse("1296", Currency.KES)  # 1296.295 rounded down
    assert [type(e) for e in tx.pull_events()] == [TransactionCreated, WithdrawalInitiated]


def test_withdrawal_is_asked_in_usd(usd_to_kes: LockedRate, now: datetime) -> None:
    with pytest.raises(CurrencyMismatch):
        _start(usd_to_kes, Money.parse("1000", Currency.KES), now)


def test_withdrawal_payout_must_fit_mpesa_limits(usd_to_kes: LockedRate, now: datetime) -> None:
    with pytest.raises(MpesaAmountOutOfRange):
        _start(usd_to_kes, Money.parse("5000", Currency.USD), now)  # 647,500 KES


def test_withdrawal_happy_path(withdrawal: Transaction, now: datetime) -> None:
    withdrawal.withdrawal_code_sent(now=now)
    assert withdrawal.status is S.AWAITING_WITHDRAWAL_CODE
    requested = withdrawal.deriv_withdrawal_requested(now=now)
    assert requested.status == EvidenceStatus.SENT
    withdrawal.deriv_withdrawal_done(deriv_transaction_id=111, now=now)
    assert status(withdrawal) is S.DERIV_WITHDRAWAL_DONE
    assert withdrawal.deriv_withdrawal is not None
    assert withdrawal.deriv_withdrawal.deriv_transaction_id == 111
    disbursement = withdrawal.mpesa_disbursement_sent(originator_conversation_id="oc-1", now=now)
    assert status(withdrawal) is S.MPESA_DISBURSEMENT_SENT
    assert disbursement.amount == withdrawal.converted_amount == Money.parse("1295", Currency.KES)
    withdrawal.mpesa_disbursement_accepted(conversation_id="AG_1", now=now)
    withdrawal.mpesa_disbursement_completed(
        transaction_receipt="RCP", result_desc="ok", raw_result="{}", now=now
    )
    assert status(withdrawal) is S.COMPLETED
    assert withdrawal.mpesa_disbursement is not None
    assert withdrawal.mpesa_disbursement.conversation_id == "AG_1"
    assert withdrawal.mpesa_disbursement.status == EvidenceStatus.CONFIRMED

    events = withdrawal.pull_events()
    changes = [(e.from_status, e.to_status) for e in events if isinstance(e, TransactionStatusChanged)]
    assert changes == [
        (S.PENDING, S.AWAITING_WITHDRAWAL_CODE),
        (S.AWAITING_WITHDRAWAL_CODE, S.DERIV_WITHDRAWAL_DONE),
        (S.DERIV_WITHDRAWAL_DONE, S.MPESA_DISBURSEMENT_SENT),
        (S.MPESA_DISBURSEMENT_SENT, S.COMPLETED),
    ]
    assert [type(e) for e in events[-2:]] == [MpesaDisbursementCompleted, TransactionCompleted]
    versions = [v for e in events if (v := e.aggregate_version()) is not None]
    assert len(versions) == len(events)  # every event carries its aggregate's version
    assert versions == sorted(versions)
    assert versions[-1] == withdrawal.version


def test_wrong_code_fails_without_moving_money(withdrawal: Transaction, now: datetime) -> None:
    withdrawal.withdrawal_code_sent(now=now)
    withdrawal.fail("invalid verification code", now=now)
    assert withdrawal.status is S.FAILED


def test_a_debit_held_back_unsent_may_be_requested_again(withdrawal: Transaction, now: datetime) -> None:
    withdrawal.withdrawal_code_sent(now=now)
    withdrawal.deriv_withdrawal_requested(now=now)
    assert withdrawal.deriv_withdrawal_may_have_gone()

    withdrawal.deriv_withdrawal_not_sent(now=now)

    assert withdrawal.status is S.AWAITING_WITHDRAWAL_CODE
    assert withdrawal.deriv_withdrawal is not None
    assert withdrawal.deriv_withdrawal.status == EvidenceStatus.FAILED
    assert not withdrawal.deriv_withdrawal_may_have_gone()
    withdrawal.deriv_withdrawal_requested(now=now)
    assert withdrawal.deriv_withdrawal.status == EvidenceStatus.SENT


def test_a_debit_that_may_have_gone_is_never_requested_twice(withdrawal: Transaction, now: datetime) -> None:
    withdrawal.withdrawal_code_sent(now=now)
    withdrawal.deriv_withdrawal_requested(now=now)

    with pytest.raises(IllegalTransition):
        withdrawal.deriv_withdrawal_requested(now=now)


def test_only_a_requested_unanswered_debit_can_be_marked_not_sent(
    withdrawal: Transaction, now: datetime
) -> None:
    withdrawal.withdrawal_code_sent(now=now)
    with pytest.raises(IllegalTransition):  # nothing requested
        withdrawal.deriv_withdrawal_not_sent(now=now)
    withdrawal.deriv_withdrawal_requested(now=now)
    withdrawal.deriv_withdrawal_done(deriv_transaction_id=7, now=now)
    with pytest.raises(IllegalTransition):  # it went through
        withdrawal.deriv_withdrawal_not_sent(now=now)


def test_b2c_fails_for_good_then_usd_goes_back(withdrawal: Transaction, now: datetime) -> None:
    _debited(withdrawal, now)
    withdrawal.mpesa_disbursement_sent(originator_conversation_id="oc-1", now=now)
    withdrawal.mpesa_disbursement_failed(
        result_code=2001, result_desc="The initiator information is invalid.", raw_result="{}", now=now
    )
    assert withdrawal.status is S.MPESA_DISBURSEMENT_SENT  # evidence only; refund comes next
    assert withdrawal.mpesa_disbursement is not None
    assert withdrawal.mpesa_disbursement.status == EvidenceStatus.FAILED
    withdrawal.reverse("USD sent back to the Deriv account", now=now)
    assert status(withdrawal) is S.REVERSED


def test_a_failed_withdrawal_after_the_debit_is_not_allowed(withdrawal: Transaction, now: datetime) -> None:
    _debited(withdrawal, now)
    with pytest.raises(IllegalTransition):
        withdrawal.fail("cannot just fail: the user's USD is with us", now=now)


def test_lost_b2c_result_resolved_as_paid(withdrawal: Transaction, now: datetime) -> None:
    _debited(withdrawal, now)
    withdrawal.mpesa_disbursement_sent(originator_conversation_id="oc-1", now=now)
    withdrawal.mark_outcome_unknown("no result callback", now=now)
    assert withdrawal.outcome_unknown_step is S.MPESA_DISBURSEMENT_SENT
    withdrawal.mpesa_disbursement_completed(
        transaction_receipt="R", result_desc=None, raw_result=None, now=now
    )
    assert withdrawal.status is S.COMPLETED


def test_lost_b2c_proven_unpaid_is_sent_again(withdrawal: Transaction, now: datetime) -> None:
    _debited(withdrawal, now)
    withdrawal.mpesa_disbursement_sent(originator_conversation_id="oc-1", now=now)
    withdrawal.mark_outcome_unknown("timeout", now=now)
    withdrawal.retry_mpesa_disbursement(now=now)
    assert withdrawal.status is S.DERIV_WITHDRAWAL_DONE
    withdrawal.mpesa_disbursement_sent(originator_conversation_id="oc-2", now=now)
    assert withdrawal.mpesa_disbursement is not None
    assert withdrawal.mpesa_disbursement.originator_conversation_id == "oc-2"


def test_lost_deriv_answer_cannot_be_resolved_as_paid_out(withdrawal: Transaction, now: datetime) -> None:
    withdrawal.withdrawal_code_sent(now=now)
    withdrawal.deriv_withdrawal_requested(now=now)
    withdrawal.mark_outcome_unknown("timeout", now=now)
    assert withdrawal.outcome_unknown_step is S.AWAITING_WITHDRAWAL_CODE
    with pytest.raises(IllegalTransition):
        withdrawal.reverse("nothing to reverse", now=now)
    withdrawal.deriv_withdrawal_done(deriv_transaction_id=2, now=now)
    assert withdrawal.status is S.DERIV_WITHDRAWAL_DONE


def test_a_repeated_b2c_result_changes_nothing(withdrawal: Transaction, now: datetime) -> None:
    _debited(withdrawal, now)
    withdrawal.mpesa_disbursement_sent(originator_conversation_id="oc-1", now=now)
    withdrawal.mpesa_disbursement_completed(
        transaction_receipt="R", result_desc=None, raw_result=None, now=now
    )
    version = withdrawal.version
    withdrawal.mpesa_disbursement_completed(
        transaction_receipt="R", result_desc=None, raw_result=None, now=now
    )
    assert withdrawal.version == version


def test_deposit_steps_are_refused_on_a_withdrawal(withdrawal: Transaction, now: datetime) -> None:
    with pytest.raises(IllegalTransition):
        withdrawal.deriv_transfer_sent(now=now)


def moved_on(events: list[DomainEvent]) -> list[bool]:
    return [e.moved_on for e in events if isinstance(e, TransactionEvent)]


def test_a_save_that_moves_on_marks_what_it_passed(withdrawal: Transaction, now: datetime) -> None:
    """The saga's wake-ups skip an event its own commit moved the transaction past: the debit and
    the payout's reservation in one save pass through DERIV_WITHDRAWAL_DONE; a Transaction Status
    confirmation completed in the same save leaves nothing to do."""
    withdrawal.withdrawal_code_sent(now=now)
    assert moved_on(withdrawal.pull_events()) == [False]  # one change: it stands
    withdrawal.deriv_withdrawal_requested(now=now)
    withdrawal.pull_events()
    withdrawal.deriv_withdrawal_done(deriv_transaction_id=111, now=now)
    withdrawal.mpesa_disbursement_sent(originator_conversation_id="oc-1", now=now)
    debit_and_payout = withdrawal.pull_events()
    assert [(type(e).__name__, e.moved_on) for e in debit_and_payout if isinstance(e, TransactionEvent)] == [
        ("TransactionStatusChanged", True),  # to DERIV_WITHDRAWAL_DONE, passed through
        ("TransactionStatusChanged", False),  # to MPESA_DISBURSEMENT_SENT
    ]
    withdrawal.mpesa_disbursement_accepted(conversation_id="AG_1", now=now)
    withdrawal.mpesa_disbursement_completed(
        transaction_receipt="RCP", result_desc="ok", raw_result="{}", now=now
    )
    ended = withdrawal.pull_events()
    assert [type(e) for e in ended] == [
        TransactionStatusChanged,
        MpesaDisbursementCompleted,
        TransactionCompleted,
    ]
    assert moved_on(ended) == [False, True, True]  # only the change to COMPLETED stands
    assert debit_and_payout[0].payload()["moved_on"] is True  # what the saga's consumer reads


def test_a_copy_changes_apart_from_its_original(withdrawal: Transaction, now: datetime) -> None:
    """What a call sent in the background records on its copy is not the caller's, nor the reverse."""
    tx = _debited(withdrawal, now)
    tx.mpesa_disbursement_sent(originator_conversation_id="PENPAY-1", now=now)
    pending = len(tx._pending_events)
    twin = tx.copied()

    twin.mpesa_disbursement_accepted(conversation_id="AG_1", now=now)
    twin.mark_outcome_unknown("B2C: the answer was lost", now=now)  # records an event

    assert status(tx) is S.MPESA_DISBURSEMENT_SENT and status(twin) is S.OUTCOME_UNKNOWN
    assert tx.version == twin.version - 2 and len(tx._pending_events) == pending
    assert tx.mpesa_disbursement is not None and tx.mpesa_disbursement.conversation_id is None
    assert twin.mpesa_disbursement is not None and twin.mpesa_disbursement.conversation_id == "AG_1"
    assert len(twin._pending_events) == pending + 1

    tx.pull_events()  # the caller saves its own: the copy keeps what it holds
    assert len(twin._pending_events) == pending + 1
