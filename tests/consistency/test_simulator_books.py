"""check_consistency against the simulators' books: the run's money really moved once.

Each test drives the Deriv and M-Pesa simulators (in process, real sockets) as PenPay would,
books the same run in the database with the simulators' own ids, then breaks one thing on
the simulators' side (or skips one call) and asserts the rule that names it.
"""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.shared.ids import new_uuid7
from mpesa_adapter.client import originator_conversation_id_for
from persistence.consistency.mpesa_books import charge_name
from persistence.consistency.report import Code, ConsistencyReport, WarningCode
from persistence.tables import mpesa_requests, transactions
from proving.simulator_books import operation_id_of, transaction_of_ocid
from tests.consistency.helpers import PHONE, raw_sql, tx_uuid
from tests.consistency.simulators import Deriv, Mpesa, Run, cents, run_with_books

pytestmark = pytest.mark.integration


@pytest.fixture
async def run(engine: AsyncEngine, database_url: str, deriv: Deriv, mpesa: Mpesa) -> Run:
    return await run_with_books(engine, database_url, deriv, mpesa)


def named(report: ConsistencyReport, code: str) -> set[str | None]:
    return {v.transaction_id for v in report.violations if v.code == code}


async def test_the_books_agree_with_a_consistent_run(run: Run) -> None:
    report = await run.check()

    assert report.violations == []
    assert report.warnings == []
    assert report.ok
    assert report.books_checked == ["deriv", "mpesa"]
    deriv, mpesa = report.floats
    # the agent sent 15.40, received 20.00, received 12.00 and refunded it
    assert deriv.ledger_movement_cents == deriv.simulator_change_cents == -15_40 + 20_00
    assert deriv.simulator_opening_cents == 50_000_00
    assert deriv.unexplained_cents == 0
    # M-Pesa charged 2,000 and 1,500 (under review) and paid 2,590
    assert mpesa.ledger_movement_cents == mpesa.simulator_change_cents == (2_000 + 1_500 - 2_590) * 100
    assert mpesa.unexplained_cents == 0


async def test_a_transfer_executed_twice_with_one_reference_is_paid_twice(run: Run) -> None:
    deposit = run.world.deposit
    await run.deriv.transfer(str(deposit.id), cents(deposit.converted_amount))

    report = await run.check()

    assert named(report, Code.PAID_TWICE) == {str(deposit.id)}
    assert named(report, Code.DERIV_UNBOOKED) == {str(deposit.id)}
    deriv = report.floats[0]
    assert deriv.ledger_movement_cents - deriv.simulator_change_cents == cents(deposit.converted_amount)
    assert Code.DERIV_FLOAT_MISMATCH in report.codes()
    assert not report.ok


async def test_a_withdrawal_debited_twice_is_paid_twice(run: Run) -> None:
    withdrawal = run.world.withdrawal
    await run.deriv.withdraw(str(withdrawal.id), withdrawal.amount.amount_minor)

    report = await run.check()

    assert named(report, Code.PAID_TWICE) == {str(withdrawal.id)}


async def test_a_refund_executed_twice_is_paid_twice(run: Run) -> None:
    reversed_ = run.world.reversed_withdrawal
    await run.deriv.transfer(f"{reversed_.id}-refund", reversed_.amount.amount_minor)

    report = await run.check()

    assert named(report, Code.PAID_TWICE) == {str(reversed_.id)}
    assert named(report, Code.DERIV_UNBOOKED) == {str(reversed_.id)}


async def test_a_reversed_withdrawal_whose_refund_never_ran(
    engine: AsyncEngine, database_url: str, deriv: Deriv, mpesa: Mpesa
) -> None:
    run = await run_with_books(engine, database_url, deriv, mpesa, skip=frozenset({"refund"}))

    report = await run.check()

    reversed_id = str(run.world.reversed_withdrawal.id)
    assert named(report, Code.REFUND_NOT_EXECUTED) == {reversed_id}
    assert named(report, Code.DERIV_UNBOOKED) == {reversed_id}
    assert report.floats[0].unexplained_cents == -run.world.reversed_withdrawal.amount.amount_minor


async def test_a_completed_deposit_whose_transfer_never_ran(
    engine: AsyncEngine, database_url: str, deriv: Deriv, mpesa: Mpesa
) -> None:
    run = await run_with_books(engine, database_url, deriv, mpesa, skip=frozenset({"deposit transfer"}))

    report = await run.check()

    assert named(report, Code.DERIV_TRANSFER_MISSING) == {str(run.world.deposit.id)}
    assert Code.DERIV_FLOAT_MISMATCH in report.codes()


async def test_a_completed_withdrawal_mpesa_never_paid(
    engine: AsyncEngine, database_url: str, deriv: Deriv, mpesa: Mpesa
) -> None:
    run = await run_with_books(engine, database_url, deriv, mpesa, skip=frozenset({"withdrawal payout"}))

    report = await run.check()

    assert named(report, Code.B2C_NOT_PAID) == {str(run.world.withdrawal.id)}
    assert Code.MPESA_FLOAT_MISMATCH in report.codes()


async def test_a_transfer_referencing_no_transaction(run: Run) -> None:
    ghost = new_uuid7()
    await run.deriv.transfer(str(ghost), 10_00)

    report = await run.check()

    assert named(report, Code.UNKNOWN_DERIV_REFERENCE) == {str(ghost)}
    assert Code.DERIV_FLOAT_MISMATCH in report.codes()


async def test_the_agent_balance_changed_outside_penpay(run: Run) -> None:
    await run.deriv.control("POST", "/accounts/CR90000000/adjust", {"amount": "-1.00", "note": "fee"})

    report = await run.check()

    assert report.codes() == {Code.DERIV_FLOAT_MISMATCH}
    assert report.floats[0].unexplained_cents == 1_00
    assert WarningCode.SIMULATOR_ADJUSTMENTS in report.warning_codes()

    # the opening balance given by the operator is used instead of the seed's
    given = await run.check(deriv_opening_balance_cents=50_000_00 - 1_00)
    assert given.violations == []
    assert given.floats[0].simulator_opening_cents == 50_000_00 - 1_00


async def test_an_stk_charge_no_deposit_knows(run: Run) -> None:
    checkout = await run.mpesa.stk(PHONE, 100)

    report = await run.check()

    assert report.codes() == {Code.STK_CHARGE_UNKNOWN, Code.MPESA_FLOAT_MISMATCH}
    assert any(checkout in v.message for v in report.violations if v.code == Code.STK_CHARGE_UNKNOWN)


async def test_a_paybill_charge_no_deposit_knows_is_named_as_a_paybill_payment(run: Run) -> None:
    trans_id = await run.mpesa.paybill(PHONE, 100)

    report = await run.check()

    assert report.codes() == {Code.STK_CHARGE_UNKNOWN, Code.MPESA_FLOAT_MISMATCH}
    unknown = [v.message for v in report.violations if v.code == Code.STK_CHARGE_UNKNOWN]
    assert len(unknown) == 1
    assert f"paybill payment {trans_id}," in unknown[0]
    assert "STK push" not in unknown[0]


def test_a_charge_is_named_by_its_kind() -> None:
    assert charge_name("C2B-UL6AB12CDE") == "paybill payment UL6AB12CDE"
    assert charge_name("ws_CO_061220261500001") == "STK push ws_CO_061220261500001"


async def test_a_stk_payment_confirmed_here_that_mpesa_never_charged(run: Run) -> None:
    failed = run.world.failed_deposit
    with raw_sql(run.world.url) as sql:
        sql.execute(
            mpesa_requests.update()
            .where(mpesa_requests.c.transaction_id == tx_uuid(failed))
            .values(status="CONFIRMED", mpesa_receipt_number="NOTCHARGED1")
        )

    report = await run.check()

    assert named(report, Code.STK_CONFIRMED_NOT_CHARGED) == {str(failed.id)}
    assert named(report, Code.FAILED_WITH_MONEY) == {str(failed.id)}


async def test_a_charge_left_unconfirmed_on_a_terminal_deposit(run: Run) -> None:
    deposit = run.world.deposit
    with raw_sql(run.world.url) as sql:
        sql.execute(
            mpesa_requests.update()
            .where(mpesa_requests.c.transaction_id == tx_uuid(deposit))
            .values(status="SUCCEEDED")
        )

    report = await run.check()

    assert named(report, Code.STK_CHARGE_UNBOOKED) == {str(deposit.id)}


async def test_a_second_b2c_for_one_withdrawal_is_paid_twice(run: Run) -> None:
    withdrawal = run.world.withdrawal
    # the same withdrawal under the saga's other OriginatorConversationID form
    await run.mpesa.b2c(f"PP-{withdrawal.id.value.hex}", PHONE, cents(withdrawal.converted_amount) // 100)

    report = await run.check()

    assert named(report, Code.PAID_TWICE) == {str(withdrawal.id)}
    assert Code.MPESA_FLOAT_MISMATCH in report.codes()


async def test_a_b2c_paid_for_a_reversed_withdrawal(run: Run) -> None:
    reversed_ = run.world.reversed_withdrawal
    await run.mpesa.b2c(f"PP-{reversed_.id.value.hex}", PHONE, cents(reversed_.converted_amount) // 100)

    report = await run.check()

    assert named(report, Code.B2C_PAID_NOT_BOOKED) == {str(reversed_.id)}


async def test_a_b2c_paid_to_no_withdrawal(run: Run) -> None:
    await run.mpesa.b2c("SOMEONE-ELSE-1", PHONE, 500)

    report = await run.check()

    assert Code.B2C_PAYOUT_UNKNOWN in report.codes()


def test_references_and_ids_are_read_back_exactly() -> None:
    tx = new_uuid7()
    assert operation_id_of(f"PenPay {tx}") == str(tx)
    assert operation_id_of(f"PenPay {tx}-refund") == f"{tx}-refund"
    assert operation_id_of(f"PenPay {tx}\n") is None
    assert operation_id_of(f"PenPay ref {tx}") is None
    assert operation_id_of(f"Other {tx}") is None
    assert transaction_of_ocid(originator_conversation_id_for(tx)) == str(tx)
    assert transaction_of_ocid(f"PP-{tx.hex}") == str(tx)
    assert transaction_of_ocid(f"PENPAY-{tx.hex}X") is None


async def test_a_completed_withdrawal_whose_deriv_debit_never_ran(
    engine: AsyncEngine, database_url: str, deriv: Deriv, mpesa: Mpesa
) -> None:
    run = await run_with_books(engine, database_url, deriv, mpesa, skip=frozenset({"withdrawal debit"}))

    report = await run.check()

    assert named(report, Code.DERIV_WITHDRAWAL_MISSING) == {str(run.world.withdrawal.id)}
    assert named(report, Code.DERIV_UNBOOKED) == set()  # nothing of it in the books to compare
    assert Code.DERIV_FLOAT_MISMATCH in report.codes()


async def test_a_transfer_of_another_amount(
    engine: AsyncEngine, database_url: str, deriv: Deriv, mpesa: Mpesa
) -> None:
    run = await run_with_books(engine, database_url, deriv, mpesa, skip=frozenset({"deposit transfer"}))
    deposit = run.world.deposit
    await deriv.transfer(str(deposit.id), cents(deposit.converted_amount) + 1)

    report = await run.check()

    assert named(report, Code.BOOKS_AMOUNT_MISMATCH) == {str(deposit.id)}
    assert named(report, Code.DERIV_UNBOOKED) == {str(deposit.id)}


async def test_a_refund_transfer_for_a_deposit_is_unexpected(run: Run) -> None:
    deposit = run.world.deposit
    await run.deriv.transfer(f"{deposit.id}-refund", 10_00)

    report = await run.check()

    assert named(report, Code.UNEXPECTED_DERIV_TRANSFER) == {str(deposit.id)}


async def test_a_stored_receipt_that_mpesa_did_not_issue(run: Run) -> None:
    deposit = run.world.deposit
    with raw_sql(run.world.url) as sql:
        sql.execute(
            mpesa_requests.update()
            .where(mpesa_requests.c.transaction_id == tx_uuid(deposit))
            .values(mpesa_receipt_number="OTHERRCPT1")
        )

    report = await run.check()

    assert report.codes() == {Code.MPESA_RECEIPT_MISMATCH}
    assert named(report, Code.MPESA_RECEIPT_MISMATCH) == {str(deposit.id)}


async def test_a_transfer_without_penpay_reference_is_a_warning_and_moves_the_float(run: Run) -> None:
    await run.deriv.transfer("", 10_00, description="manual top-up to a client")

    report = await run.check()

    assert WarningCode.UNREFERENCED_DERIV_TRANSFER in report.warning_codes()
    assert report.codes() == {Code.DERIV_FLOAT_MISMATCH}


async def test_money_moved_for_transactions_in_flight_is_a_warning_and_explains_the_floats(run: Run) -> None:
    # the pending deposit's customer paid (callback not processed yet); the deposit under review
    # was in fact transferred by Deriv although the ledger booked the refusal
    pending, review = run.world.pending_deposit, run.world.review_deposit
    checkout = await run.mpesa.stk(PHONE, pending.amount.amount_minor // 100)
    with raw_sql(run.world.url) as sql:
        sql.execute(
            mpesa_requests.update()
            .where(mpesa_requests.c.transaction_id == tx_uuid(pending))
            .values(checkout_request_id=checkout)
        )
    await run.deriv.transfer(str(review.id), cents(review.converted_amount))

    report = await run.check()

    assert report.violations == []
    assert report.ok
    warned = {(w.code, w.transaction_id) for w in report.warnings}
    assert (WarningCode.STK_CHARGE_PENDING, str(pending.id)) in warned
    assert (WarningCode.IN_FLIGHT_DIFFERENCE, str(review.id)) in warned
    deriv, mpesa = report.floats
    assert deriv.in_flight_difference_cents == cents(review.converted_amount)
    assert mpesa.in_flight_difference_cents == -pending.amount.amount_minor
    assert deriv.unexplained_cents == mpesa.unexplained_cents == 0


async def test_a_b2c_paid_while_the_withdrawal_waits_for_its_result_is_a_warning(run: Run) -> None:
    withdrawal = run.world.withdrawal
    with raw_sql(run.world.url) as sql:
        sql.execute(
            transactions.update()
            .where(transactions.c.id == tx_uuid(withdrawal))
            .values(status="MPESA_DISBURSEMENT_SENT")
        )

    report = await run.check()

    assert report.violations == []
    assert (WarningCode.B2C_PAID_PENDING, str(withdrawal.id)) in {
        (w.code, w.transaction_id) for w in report.warnings
    }


async def test_an_stk_charge_whose_answer_a_deposit_in_review_lost_is_that_reviews(run: Run) -> None:
    from persistence.unit_of_work import SqlUnitOfWork
    from tests.consistency.helpers import start_deposit

    # The worker sent the push, M-Pesa charged the phone, and the answer never reached the database.
    lost = start_deposit(run.world.deposit.user_id, shillings=1_234, phone="254711999888")
    lost.mark_outcome_unknown("the STK push was sent and its answer lost")
    lost.needs_review("the STK push's answer was lost: no CheckoutRequestID to query")
    async with SqlUnitOfWork(run.world.engine) as uow:
        await uow.transactions.add(lost)
        await uow.commit()
    await run.mpesa.stk("254711999888", 1_234)

    report = await run.check()

    assert report.violations == []
    assert {(w.code, w.transaction_id) for w in report.warnings} == {
        (WarningCode.STK_CHARGE_IN_REVIEW, str(lost.id))
    }
    assert report.floats[1].unexplained_cents == 0

    # a second charge of the same phone and amount has no review left to belong to
    await run.mpesa.stk("254711999888", 1_234)
    again = await run.check()
    assert Code.STK_CHARGE_UNKNOWN in again.codes()
