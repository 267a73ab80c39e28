"""Paybill (C2B) deposits end to end: the Daraja simulator's customer pays the paybill with a deposit
reference, PenPay's validation and confirmation endpoints answer over real sockets, the deposit saga
credits Deriv; MariaDB, Redis Streams, the Deriv simulator and the gateway are all real."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from sqlalchemy import select

from application.identity.ports import KnownUser
from application.payments.paybill import key_hash
from domain.payments.status import TransactionStatus as S
from domain.shared.ids import TransactionId, UserId
from domain.user.kyc_snapshot import KycSnapshot
from domain.wallet.account_kind import AccountKind
from domain.wallet.money import Currency
from mpesa_adapter.client import DarajaClient
from mpesa_adapter.routes import PATHS, CallbackKind
from persistence import ledger_balances
from persistence.tables import c2b_payments, ledger_accounts, mpesa_callback_reviews, transactions
from tests import databases
from tests.sagas.harness import Stack

pytestmark = pytest.mark.integration

PAYER = "254712345678"


async def _register(stack: Stack) -> None:
    async with DarajaClient(stack.daraja_config) as client:
        registered = await client.register_c2b_urls()
    assert registered.shortcode == stack.paybill.shortcode


async def _pay(stack: Stack, account: str, shillings: int, **extra: Any) -> dict[str, Any]:
    """The customer's phone pays the paybill (the simulator's control API), then the deliveries drain."""
    body = {"account": account, "amount": shillings, "phone": PAYER, **extra}
    async with stack.http.post(f"{stack.mpesa_sim.base_url}/__control__/c2b/pay", json=body) as response:
        assert response.status == 201, await response.text()
        paid = dict(await response.json())
    await stack.mpesa_sim.drain()
    return paid


async def _row(stack: Stack, trans_id: str) -> Any:
    async with stack.engine.connect() as conn:
        return (await conn.execute(select(c2b_payments).where(c2b_payments.c.trans_id == trans_id))).first()


async def _reviews(stack: Stack, trans_id: str | None = None) -> list[Any]:
    query = select(mpesa_callback_reviews)
    if trans_id is not None:
        query = query.where(mpesa_callback_reviews.c.correlation_id == trans_id)
    async with stack.engine.connect() as conn:
        return list((await conn.execute(query)).all())


async def _deposits_of(stack: Stack, user: UserId) -> list[Any]:
    async with stack.engine.connect() as conn:
        return list(
            (await conn.execute(select(transactions).where(transactions.c.user_id == user.value))).all()
        )


async def _suspense_kes(stack: Stack) -> int:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            select(ledger_balances.balance().label("balance_cents")).where(
                ledger_accounts.c.kind == AccountKind.SUSPENSE.value, ledger_accounts.c.currency == "KES"
            )
        )
        return sum(int(r.balance_cents) for r in rows)


async def _settled_row(stack: Stack, trans_id: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        row = await _row(stack, trans_id)
        if row is not None and row.status in ("DEPOSIT", "SUSPENSE"):
            return row
        assert time.monotonic() < deadline, f"{trans_id} not settled: {row and row.status}"
        await stack.mpesa_sim.drain()


async def test_a_paybill_deposit_is_credited_at_deriv_once_though_confirmed_twice(stack: Stack) -> None:
    await _register(stack)
    user = await stack.user()
    reference = await stack.paybill.reference_for(user)
    assert await stack.paybill.reference_for(user) == reference  # the same reference ever after

    paid = await _pay(stack, reference.lower(), 2_600, copies=2)  # typed in lower case: still theirs

    assert paid["status"] == "completed" and paid["validation"] == "accepted"
    confirmations = [
        c
        for c in stack.mpesa_sim.callbacks
        if c["kind"] == "c2b_confirmation" and c["ref"] == paid["TransID"]
    ]
    assert [c["status"] for c in confirmations] == [200, 200]  # delivered twice, both answered
    row = await _settled_row(stack, paid["TransID"])
    assert row.status == "DEPOSIT"
    assert "*" in row.msisdn_shown and PAYER not in json.dumps([row.msisdn_shown, row.bill_ref])
    tx_id = TransactionId(row.transaction_id)

    done = await stack.settle(tx_id)

    assert done.status is S.COMPLETED, done.failure_reason
    assert done.amount.amount_minor == 2_600_00 and done.converted_amount is not None
    assert done.converted_amount.amount_minor == 20_00  # KES 2,600 at 130 KES/USD
    assert done.mpesa_request is not None and done.mpesa_request.mpesa_receipt_number == paid["TransID"]
    assert done.idempotency_key_hash == key_hash(paid["TransID"])
    assert await stack.deriv_transfers(str(tx_id)) == 1
    assert len(await _deposits_of(stack, user)) == 1
    assert await stack.wallet_balance(user, Currency.KES) == 0


async def test_validation_refuses_an_unknown_reference_and_an_amount_out_of_limits(stack: Stack) -> None:
    await _register(stack)
    user = await stack.user()
    reference = await stack.paybill.reference_for(user)
    wrong_check = reference[:-1] + ("2" if reference[-1] != "2" else "3")

    unknown = await _pay(stack, "PP2222222A", 2_600)
    mistyped = await _pay(stack, wrong_check, 2_600)
    too_small = await _pay(stack, reference, 100)  # KES 100 = USD 0.76, under Deriv's USD 10
    largest = await _pay(stack, reference, 250_000)  # M-Pesa's most, USD 1,923.07: within Deriv's

    assert (unknown["status"], unknown["code"]) == ("declined", "C2B00012")
    assert (mistyped["status"], mistyped["code"]) == ("declined", "C2B00012")
    assert (too_small["status"], too_small["code"]) == ("declined", "C2B00013")
    assert largest["status"] == "completed"
    for refused in (unknown, mistyped, too_small):
        row = await _row(stack, refused["TransID"])
        assert row.status == "REFUSED" and row.transaction_id is None
    books = await stack.mpesa_books()
    collected = [c for c in books["c2b"]["transactions"] if c["collected"]]
    assert [c["trans_id"] for c in collected] == [largest["TransID"]]
    big = await _settled_row(stack, largest["TransID"])
    assert (await stack.settle(TransactionId(big.transaction_id))).status is S.COMPLETED


async def test_money_for_an_unknown_reference_goes_to_suspense_and_review(stack: Stack) -> None:
    await _register(stack)
    user = await stack.user()
    reference = await stack.paybill.reference_for(user)

    # The paybill's validation skipped (not enabled at Safaricom, or unreachable with "Completed"):
    unknown = await _pay(stack, "NOT-A-REF", 1_500, validation=False)
    unvalidated = await _pay(stack, reference, 2_600, validation=False)

    for paid, amount in ((unknown, 1_500), (unvalidated, 2_600)):
        assert paid["status"] == "completed" and paid["validation"] == "skipped"
        row = await _settled_row(stack, paid["TransID"])
        assert row.status == "SUSPENSE" and row.transaction_id is None
        assert "no validation" in row.reason
        assert row.amount_cents == amount * 100
        [review] = await _reviews(stack, paid["TransID"])
        assert (review.kind, review.reason, review.status) == ("c2b_confirmation", "PAYBILL_SUSPENSE", "OPEN")
    assert await _suspense_kes(stack) >= 4_100_00  # credit-normal: what PenPay holds for nobody yet
    assert await _deposits_of(stack, user) == []


async def test_a_masked_msisdn_is_accepted_and_its_visible_digits_cross_checked(stack: Stack) -> None:
    await _register(stack)
    user = await stack.user()
    reference = await stack.paybill.reference_for(user)
    # The confirmation never arrives from M-Pesa; one with other visible digits does (a forgery
    # that knows the path secret, or M-Pesa's own mix-up): it must not become the user's deposit.
    stack.mpesa_sim.add_fault("drop", api="c2b")
    paid = await _pay(stack, reference, 2_600)
    assert paid["validation"] == "accepted"
    validated = await _row(stack, paid["TransID"])
    assert validated.status == "VALIDATED" and validated.msisdn_shown == "0712***678"

    forged = dict(paid["body"], MSISDN="0799***111")
    path = PATHS[CallbackKind.C2B_CONFIRMATION]
    url = f"{stack.callbacks.base_url}{path}/{stack.daraja_config.callback_secret}"
    async with stack.http.post(url, json=forged) as response:
        assert response.status == 200
        assert await response.json() == {"ResultCode": 0, "ResultDesc": "Success"}

    row = await _row(stack, paid["TransID"])
    assert row.status == "SUSPENSE" and "visible MSISDN digits" in row.reason
    assert await _deposits_of(stack, user) == []

    # The genuine masked confirmation of the next payment matches and becomes the deposit.
    second = await _pay(stack, reference, 1_300)
    row = await _settled_row(stack, second["TransID"])
    assert row.status == "DEPOSIT"
    assert (await stack.settle(TransactionId(row.transaction_id))).status is S.COMPLETED


async def test_a_confirmation_with_a_wrong_path_secret_is_refused_and_changes_nothing(stack: Stack) -> None:
    await _register(stack)
    user = await stack.user()
    reference = await stack.paybill.reference_for(user)
    stack.mpesa_sim.add_fault("drop", api="c2b")  # M-Pesa's own confirmation is not sent
    paid = await _pay(stack, reference, 2_600)
    confirm = f"{stack.callbacks.base_url}{PATHS[CallbackKind.C2B_CONFIRMATION]}"
    genuine = f"{confirm}/{stack.daraja_config.callback_secret}"

    async with stack.http.post(f"{confirm}/not-the-secret-at-all-0123", json=paid["body"]) as response:
        assert response.status == 404
    malformed = {**paid["body"], "TransID": "not a receipt"}
    async with stack.http.post(genuine, json=malformed) as response:
        assert response.status == 400

    row = await _row(stack, paid["TransID"])
    assert row.status == "VALIDATED" and row.transaction_id is None  # nothing settled
    assert sorted(r.reason for r in await _reviews(stack)) == ["BAD_PATH_SECRET", "MALFORMED"]
    assert await _deposits_of(stack, user) == []

    # The genuine confirmation (as reconciliation would bring it) still settles it, once.
    async with stack.http.post(genuine, json=paid["body"]) as response:
        assert response.status == 200
    row = await _row(stack, paid["TransID"])
    assert row.status == "DEPOSIT"
    assert (await stack.settle(TransactionId(row.transaction_id))).status is S.COMPLETED


async def test_validation_holds_a_paybill_deposit_to_the_compliance_policy(stack: Stack) -> None:
    from application.identity.compliance import CompliancePolicy
    from application.payments.paybill import PaybillDeposits, PaybillPayment
    from application.payments.rates import FixedRates
    from persistence.transaction_stats import SqlTransactionStats
    from tests.sagas.harness import TRANSFER_LIMITS

    async def no_refresh(user_id: UserId, *, known: KnownUser | None = None) -> KycSnapshot:
        raise AssertionError("validation must not call Deriv")

    guarded = PaybillDeposits(
        unit_of_work=stack.uow,
        rates=FixedRates(),
        transfer_limits=TRANSFER_LIMITS,
        shortcode=stack.paybill.shortcode,
        policy=CompliancePolicy(
            unit_of_work=stack.uow,
            stats=SqlTransactionStats(stack.engine),
            refresh_kyc=no_refresh,
            clock=stack.clock,  # the core's: what stamps the stack's records
        ),
    )
    user = await stack.user()  # phone verified, Deriv bound, but no KYC snapshot held
    reference = await guarded.reference_for(user)
    payment = PaybillPayment("UL6KYC0001", stack.paybill.shortcode, reference, 2_600_00, "0712***678", "{}")

    answer = await guarded.validate(payment)

    assert (answer.result_code, answer.accepted) == ("C2B00014", False)
    row = await _row(stack, "UL6KYC0001")
    assert row.status == "REFUSED" and "KYC_INCOMPLETE" in row.reason
    assert (await guarded.validate(payment)).result_code == "C2B00014"  # asked again: the same answer


async def test_a_repeat_confirmation_with_other_values_changes_nothing_and_is_kept(stack: Stack) -> None:
    await _register(stack)
    user = await stack.user()
    paid = await _pay(stack, await stack.paybill.reference_for(user), 2_600)
    row = await _settled_row(stack, paid["TransID"])
    assert row.status == "DEPOSIT"
    path = PATHS[CallbackKind.C2B_CONFIRMATION]
    url = f"{stack.callbacks.base_url}{path}/{stack.daraja_config.callback_secret}"

    async with stack.http.post(url, json=dict(paid["body"], TransAmount="26000.00")) as response:
        assert response.status == 200

    assert (await _row(stack, paid["TransID"])).transaction_id == row.transaction_id
    assert [r.reason for r in await _reviews(stack, paid["TransID"])] == ["CONFLICTING_RESULT"]
    assert len(await _deposits_of(stack, user)) == 1
    done = await stack.settle(TransactionId(row.transaction_id))
    assert done.status is S.COMPLETED and done.amount.amount_minor == 2_600_00


async def test_a_confirmation_the_server_ends_in_a_deadlock_is_settled_by_running_it_again(
    stack: Stack,
) -> None:
    """Two deliveries of one new TransID (or two new ones in one index gap) take the same gap lock
    and both insert: InnoDB ends one transaction to break the deadlock. That confirmation was
    answered with an error (M-Pesa does not redeliver it) and waited for reconciliation in suspense:
    found by the full chaos soak. Here another transaction takes the gap first and is made the
    heavier one, so the server ends the confirmation's; it must be settled anyway."""
    await _register(stack)
    database = stack.engine.url.database
    other = databases._admin()
    try:
        with other.cursor() as cursor:
            cursor.execute(f"USE `{database}`")
            # A recycled database keeps its last test's deleted rows in the index until purge runs,
            # and they split the gap: rebuilt, the index is empty and one gap holds every TransID.
            cursor.execute("ALTER TABLE c2b_payments FORCE")
            cursor.execute("BEGIN")
            # heavier than the confirmation's transaction: the server ends the lighter one
            for n in range(30):
                cursor.execute(
                    "INSERT INTO processed_events (consumer, event_id, processed_at)"
                    " VALUES (%s, UNHEX(REPLACE(UUID(), '-', '')), %s)",
                    (f"deadlock-test-{n}", "2026-12-06 12:00:00"),
                )
            cursor.execute("SELECT id FROM c2b_payments WHERE trans_id = 'UL6ZZZZZZZ' FOR UPDATE")  # the gap
        paying = asyncio.create_task(_pay(stack, "NOT-A-REF", 1_500, validation=False))
        for _ in range(2_000):  # until the confirmation's insert waits on the gap this holds
            if _insert_waits(database):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the confirmation never reached its insert")
        with other.cursor() as cursor:
            cursor.execute(  # into the same gap: a cycle, the confirmation's transaction is ended
                "INSERT INTO c2b_payments (id, trans_id, shortcode, bill_ref, amount_cents,"
                " amount_currency, status, created_at, updated_at)"
                " VALUES (UNHEX(REPLACE(UUID(), '-', '')), 'UL6ZZZZZZZ', '600000', 'X', 100, 'KES',"
                " 'SUSPENSE', '2026-12-06 12:00:00', '2026-12-06 12:00:00')"
            )
        other.rollback()
        paid = await paying
    finally:
        other.close()
    row = await _settled_row(stack, paid["TransID"])
    assert row.status == "SUSPENSE" and row.amount_cents == 1_500_00
    assert await _deadlocks(database) >= 1  # the server did end one: the test proves the retry


def _insert_waits(database: str) -> bool:
    admin = databases._admin()
    try:
        with admin.cursor() as cursor:
            # an insert still running is waiting: nothing else holds it up (Execute: the engine's
            # statements run prepared)
            cursor.execute(
                "SELECT COUNT(*) FROM information_schema.processlist WHERE db = %s"
                " AND command IN ('Query', 'Execute') AND info LIKE 'INSERT INTO c2b_payments%%'",
                (database,),
            )
            return bool(cursor.fetchone()[0])
    finally:
        admin.close()


async def _deadlocks(database: str) -> int:
    admin = databases._admin()
    try:
        with admin.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'")
            return int(cursor.fetchone()[1])
    finally:
        admin.close()
