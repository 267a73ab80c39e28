from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from domain.payments.attachments import EvidenceStatus
from domain.payments.errors import AmountMismatch, IllegalTransition, InvalidEvidence
from domain.payments.events import (
    DepositInitiated,
    DerivTransferCompleted,
    NeedsReview,
    TransactionCompleted,
    TransactionCreated,
    TransactionFailed,
    TransactionStatusChanged,
)
from domain.payments.idempotency import IdempotencyKey
from domain.payments.status import TransactionStatus, TransactionType
from domain.payments.transaction import Transaction
from domain.shared.ids import UserId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.errors import NotMpesaPhone, VirtualAccountRefused
from domain.user.phone_number import PhoneNumber
from domain.wallet.errors import CurrencyMismatch, MpesaAmountOutOfRange, NotWholeShillings, RateExpired
from domain.wallet.locked_rate import LockedRate
from domain.wallet.money import Currency, Money
from tests.unit.conftest import stk_request

pytestmark = pytest.mark.unit

S = TransactionStatus


def status(tx: Transaction) -> S:
    """The status read afresh: mypy would keep the one an earlier assert narrowed across a transition."""
    return tx.status


def unknown_step(tx: Transaction) -> S | None:
    """Read afresh, as `status`."""
    return tx.outcome_unknown_step


def _start(
    rate: LockedRate,
    *,
    amount: str = "1000",
    phone: str = "254712345678",
    login: str = "CR1",
    now: datetime,
    pushed_by_initiator: bool = False,
) -> Transaction:
    user_id = UserId.new()
    return Transaction.start_deposit(
        user_id=user_id,
        amount=Money.parse(amount, Currency.KES),
        idempotency_key=IdempotencyKey.create("k", scope=str(user_id), operation="deposit"),
        locked_rate=rate,
        phone=PhoneNumber(phone),
        deriv_login_id=DerivLoginId(login),
        now=now,
        pushed_by_initiator=pushed_by_initiator,
    )


def _confirmed(deposit: Transaction, now: datetime) -> Transaction:
    deposit.stk_push_sent(stk_request(deposit), now=now)
    deposit.mpesa_confirmed(mpesa_receipt_number="RCP1", amount=deposit.amount, raw_callback="{}", now=now)
    return deposit


def test_start_deposit_locks_the_converted_usd_and_raises_created_and_initiated(
    kes_to_usd: LockedRate, now: datetime
) -> None:
    tx = _start(kes_to_usd, now=now)
    assert (tx.type, tx.status, tx.version) == (TransactionType.DEPOSIT, S.PENDING, 1)
    assert tx.converted_amount == Money(772, Currency.USD)  # 1000 / 129.5, rounded down
    assert tx.locked_rate is kes_to_usd
    events = tx.pull_events()
    assert [type(e) for e in events] == [TransactionCreated, DepositInitiated]
    assert all(e.aggregate_version() == 1 for e in events)
    assert tx.pull_events() == []


@pytest.mark.parametrize("pushed_by_initiator", [False, True])
def test_deposit_initiated_says_who_sends_the_push(
    kes_to_usd: LockedRate, now: datetime, pushed_by_initiator: bool
) -> None:
    tx = _start(kes_to_usd, now=now, pushed_by_initiator=pushed_by_initiator)
    initiated = tx.pull_events()[1]
    assert isinstance(initiated, DepositInitiated)
    # in the outbox payload the saga workers read: True leaves the push to the initiator
    assert initiated.payload()["pushed_by_initiator"] is pushed_by_initiator


def test_deposit_amount_must_be_whole_shillings(kes_to_usd: LockedRate, now: datetime) -> None:
    with pytest.raises(NotWholeShillings):
        _start(kes_to_usd, amount="100.50", now=now)


def test_deposit_amount_must_fit_mpesa_limits(kes_to_usd: LockedRate, now: datetime) -> None:
    with pytest.raises(MpesaAmountOutOfRange):
        _start(kes_to_usd, amount="300000", now=now)


def test_deposit_needs_a_kenyan_mpesa_phone(kes_to_usd: LockedRate, now: datetime) -> None:
    with pytest.raises(NotMpesaPhone):
        _start(kes_to_usd, phone="14155550123", now=now)


def test_deposit_to_a_demo_account_is_refused(kes_to_usd: LockedRate, now: datetime) -> None:
    with pytest.raises(VirtualAccountRefused):
        _start(kes_to_usd, login="VRTC123", now=now)


def test_deposit_needs_a_rate_into_usd(usd_to_kes: LockedRate, now: datetime) -> None:
    with pytest.raises(CurrencyMismatch):
        _start(usd_to_kes, now=now)


def test_deposit_with_an_expired_rate_is_refused(kes_to_usd: LockedRate) -> None:
    with pytest.raises(RateExpired):
        _start(kes_to_usd, now=kes_to_usd.expires_at + timedelta(seconds=1))


def test_deposit_happy_path(deposit: Transaction, now: datetime) -> None:
    deposit.stk_push_sent(stk_request(deposit), now=now)
    assert deposit.status is S.AWAITING_MPESA
    deposit.mpesa_confirmed(mpesa_receipt_number="RCP1", amount=deposit.amount, raw_callback="{}", now=now)
    assert status(deposit) is S.MPESA_CONFIRMED
    assert deposit.mpesa_request is not None
    assert deposit.mpesa_request.status == EvidenceStatus.CONFIRMED
    assert deposit.mpesa_request.mpesa_receipt_number == "RCP1"
    transfer = deposit.deriv_transfer_sent(now=now)
    assert status(deposit) is S.DERIV_TRANSFER_SENT
    assert transfer.transfer_id == str(deposit.id)
    assert transfer.amount == deposit.converted_amount
    deposit.deriv_transfer_completed(deriv_transaction_id=987, now=now)
    assert status(deposit) is S.COMPLETED
    assert deposit.is_terminal
    assert deposit.deriv_transfer is not None and deposit.deriv_transfer.deriv_transaction_id == 987
    assert deposit.version == 5

    events = deposit.pull_events()
    assert [type(e).__name__ for e in events] == [
        "TransactionStatusChanged",
        "TransactionStatusChanged",
        "TransactionStatusChanged",
        "TransactionStatusChanged",
        "DerivTransferCompleted",
        "TransactionCompleted",
    ]
    changes = [
        (e.from_status, e.to_status, e.version) for e in events if isinstance(e, TransactionStatusChanged)
    ]
    assert changes == [
        (S.PENDING, S.AWAITING_MPESA, 2),
        (S.AWAITING_MPESA, S.MPESA_CONFIRMED, 3),
        (S.MPESA_CONFIRMED, S.DERIV_TRANSFER_SENT, 4),
        (S.DERIV_TRANSFER_SENT, S.COMPLETED, 5),
    ]
    completed = [e for e in events if isinstance(e, DerivTransferCompleted)]
    assert completed[0].deriv_transaction_id == 987


def test_a_repeated_mpesa_callback_changes_nothing(deposit: Transaction, now: datetime) -> None:
    _confirmed(deposit, now)
    version = deposit.version
    deposit.pull_events()
    deposit.mpesa_confirmed(mpesa_receipt_number="RCP1", amount=deposit.amount, raw_callback="{}", now=now)
    assert deposit.version == version
    assert deposit.pull_events() == []


def test_a_callback_for_another_amount_is_refused(deposit: Transaction, now: datetime) -> None:
    deposit.stk_push_sent(stk_request(deposit), now=now)
    with pytest.raises(AmountMismatch):
        deposit.mpesa_confirmed(
            mpesa_receipt_number="R", amount=Money.parse("1", Currency.KES), raw_callback=None, now=now
        )
    assert deposit.status is S.AWAITING_MPESA


def test_the_stk_push_must_ask_for_the_transaction_amount(deposit: Transaction, now: datetime) -> None:
    request = stk_request(deposit)
    from dataclasses import replace

    with pytest.raises(InvalidEvidence):
        deposit.stk_push_sent(replace(request, amount=Money.parse("999", Currency.KES)), now=now)


def test_customer_did_not_pay(deposit: Transaction, now: datetime) -> None:
    deposit.stk_push_sent(stk_request(deposit), now=now)
    deposit.pull_events()
    deposit.mpesa_failed(
        result_code=1032, result_desc="Request cancelled by user", raw_callback="{}", now=now
    )
    assert deposit.status is S.FAILED
    assert deposit.failure_reason is not None and "1032" in deposit.failure_reason
    assert deposit.mpesa_request is not None and deposit.mpesa_request.status == EvidenceStatus.FAILED
    kinds = [type(e) for e in deposit.pull_events()]
    # MpesaCallbackReceived is raised when the callback is recorded (stk_callback_received), not here.
    assert kinds == [TransactionStatusChanged, TransactionFailed]


def test_a_lost_callback_then_query_says_paid(deposit: Transaction, now: datetime) -> None:
    deposit.stk_push_sent(stk_request(deposit), now=now)
    deposit.mark_outcome_unknown("no callback after 3 minutes", now=now)
    assert deposit.status is S.OUTCOME_UNKNOWN
    assert deposit.outcome_unknown_step is S.AWAITING_MPESA
    deposit.mpesa_confirmed(mpesa_receipt_number="R9", amount=deposit.amount, raw_callback=None, now=now)
    assert status(deposit) is S.MPESA_CONFIRMED


def test_lost_deriv_answer_cannot_end_as_failed_because_the_customer_paid(
    deposit: Transaction, now: datetime
) -> None:
    _confirmed(deposit, now)
    deposit.deriv_transfer_sent(now=now)
    deposit.mark_outcome_unknown("websocket closed", now=now)
    assert deposit.outcome_unknown_step is S.DERIV_TRANSFER_SENT
    with pytest.raises(IllegalTransition):
        deposit.fail("no", now=now)
    assert deposit.status is S.OUTCOME_UNKNOWN


def test_lost_deriv_answer_resolved_from_the_statement(deposit: Transaction, now: datetime) -> None:
    _confirmed(deposit, now)
    deposit.deriv_transfer_sent(now=now)
    deposit.mark_outcome_unknown("timeout", now=now)
    deposit.deriv_transfer_completed(deriv_transaction_id=5, now=now)
    assert deposit.status is S.COMPLETED


def test_transfer_proven_absent_is_sent_again(deposit: Transaction, now: datetime) -> None:
    _confirmed(deposit, now)
    deposit.deriv_transfer_sent(now=now)
    deposit.mark_outcome_unknown("timeout", now=now)
    deposit.retry_deriv_transfer(now=now)
    assert deposit.status is S.MPESA_CONFIRMED
    deposit.deriv_transfer_sent(now=now)
    deposit.deriv_transfer_completed(deriv_transaction_id=6, now=now)
    assert status(deposit) is S.COMPLETED


def test_deriv_refuses_after_mpesa_paid_then_refund(deposit: Transaction, now: datetime) -> None:
    _confirmed(deposit, now)
    deposit.deriv_transfer_sent(now=now)
    deposit.pull_events()
    deposit.deriv_transfer_refused("account disabled", now=now)
    assert deposit.status is S.NEEDS_REVIEW
    assert any(isinstance(e, NeedsReview) for e in deposit.pull_events())
    deposit.reverse("refunded by B2C", now=now)
    assert status(deposit) is S.REVERSED


def test_operator_completes_after_review(deposit: Transaction, now: datetime) -> None:
    _confirmed(deposit, now)
    deposit.needs_review("odd", now=now)
    deposit.pull_events()
    deposit.complete_after_review("funded by hand", now=now)
    assert deposit.status is S.COMPLETED
    assert any(isinstance(e, TransactionCompleted) for e in deposit.pull_events())


def test_a_completed_deposit_stays_completed(deposit: Transaction, now: datetime) -> None:
    _confirmed(deposit, now)
    deposit.deriv_transfer_sent(now=now)
    deposit.deriv_transfer_completed(deriv_transaction_id=1, now=now)
    moves: tuple[Callable[[], object], ...] = (
        lambda: deposit.fail("x", now=now),
        lambda: deposit.reverse("x", now=now),
        lambda: deposit.needs_review("x", now=now),
        lambda: deposit.mark_outcome_unknown("x", now=now),
    )
    for move in moves:
        with pytest.raises(IllegalTransition):
            move()
    assert deposit.status is S.COMPLETED


def test_withdrawal_steps_are_refused_on_a_deposit(deposit: Transaction, now: datetime) -> None:
    with pytest.raises(IllegalTransition):
        deposit.withdrawal_code_sent(now=now)


def test_reasons_are_cut_to_fit_storage(deposit: Transaction, now: datetime) -> None:
    deposit.fail("x" * 1000, now=now)
    assert deposit.failure_reason is not None and len(deposit.failure_reason) == 255


def test_reconstitute_raises_no_events(deposit: Transaction) -> None:
    copy = Transaction.reconstitute(
        id=deposit.id,
        user_id=deposit.user_id,
        type=deposit.type,
        status=deposit.status,
        amount=deposit.amount,
        idempotency_key_hash=deposit.idempotency_key_hash,
        locked_rate=deposit.locked_rate,
        converted_amount=deposit.converted_amount,
        phone=deposit.phone,
        deriv_login_id=deposit.deriv_login_id,
        failure_reason=None,
        version=7,
        created_at=deposit.created_at,
        updated_at=deposit.updated_at,
    )
    assert copy.pull_events() == []
    assert copy.version == 7


def test_a_lost_push_s_answer_found_in_m_pesa_s_records_is_recorded_once(
    deposit: Transaction, now: datetime
) -> None:
    with pytest.raises(IllegalTransition):  # its push may still be answered: not lost yet
        deposit.lost_push_answer_found(checkout_request_id="ws_CO_1", merchant_request_id="mr-1", now=now)
    deposit.mark_outcome_unknown("the STK push's answer was lost", now=now)
    assert unknown_step(deposit) is S.PENDING
    deposit.lost_push_answer_found(checkout_request_id="ws_CO_1", merchant_request_id="mr-1", now=now)
    request = deposit.mpesa_request
    assert request is not None and request.status == EvidenceStatus.SENT
    assert (request.checkout_request_id, request.amount, request.phone) == (
        "ws_CO_1",
        deposit.amount,
        deposit.phone,
    )
    assert unknown_step(deposit) is S.AWAITING_MPESA  # now STK Query can be asked
    with pytest.raises(InvalidEvidence):
        deposit.lost_push_answer_found(checkout_request_id="ws_CO_2", merchant_request_id="mr-2", now=now)


def test_only_people_take_a_lost_push_s_payment_in_on_m_pesa_s_list(
    deposit: Transaction, now: datetime
) -> None:
    deposit.mark_outcome_unknown("the STK push's answer was lost", now=now)
    with pytest.raises(IllegalTransition):  # the saga needs the callback and STK Query
        deposit.lost_push_paid_as_listed(receipt="UAB1CD2EF3", now=now)
    deposit.needs_review("the STK push's answer was lost", now=now)
    deposit.lost_push_paid_as_listed(receipt="UAB1CD2EF3", now=now)
    request = deposit.mpesa_request
    assert request is not None and request.status == EvidenceStatus.CONFIRMED
    assert (request.checkout_request_id, request.mpesa_receipt_number) == ("PULL-UAB1CD2EF3", "UAB1CD2EF3")
    assert request.amount == deposit.amount and request.phone == deposit.phone
    with pytest.raises(InvalidEvidence):
        deposit.lost_push_paid_as_listed(receipt="UAB1CD2EF4", now=now)
