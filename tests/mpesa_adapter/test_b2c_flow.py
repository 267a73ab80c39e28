"""B2C v3 -> Result / queue timeout -> Transaction Status, against the simulator, storage on MariaDB."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import event

from domain.shared.ids import TransactionId
from mpesa_adapter import errors
from mpesa_adapter.callback_store import CONFIRMED, FAILED, SUCCEEDED, UNKNOWN
from mpesa_adapter.confirmer import Verdict
from mpesa_adapter.inbox import Outcome
from persistence.unit_of_work import SqlUnitOfWork
from tests.mpesa_adapter.conftest import Harness, phone

pytestmark = pytest.mark.integration


async def test_payout_result_then_confirmed_by_transaction_status(h: Harness) -> None:
    msisdn = phone()
    tx_id, ocid = await h.payout(msisdn, 250)
    await h.drain()
    assert h.inbox.of("b2c_result") == [Outcome.SUCCESS_RECORDED]
    row = await h.disbursement_row(ocid)
    book = h.sim.engine.books.b2c[ocid]
    assert (row.status, row.transaction_receipt, row.conversation_id) == (
        SUCCEEDED,
        book.transaction_id,
        book.conversation_id,
    )

    pending = await h.confirmer.confirm_b2c(ocid)
    assert pending.verdict == Verdict.PENDING  # Transaction Status answers asynchronously
    await h.drain()
    assert h.inbox.of("status_result") == [Outcome.CONFIRMED]
    assert (await h.confirmer.confirm_b2c(ocid)).verdict == Verdict.CONFIRMED
    assert (await h.disbursement_row(ocid)).status == CONFIRMED
    # The answer proving the payout completes the withdrawal in its own commit (no saga step after)
    assert [e.event_type for e in await h.events(tx_id)] == [
        "MpesaCallbackReceived",
        "MpesaDisbursementCompleted",
        "TransactionStatusChanged",
        "TransactionCompleted",
    ]
    assert h.sim.books["b2c"]["total_paid"] == 250


async def test_queue_timeout_after_money_moved_resolves_to_exactly_one_payout(h: Harness) -> None:
    msisdn = phone()
    h.sim.add_fault("queue_timeout", api="b2c", phone=msisdn)
    _, ocid = await h.payout(msisdn, 400)
    await h.drain()
    assert h.inbox.of("b2c_timeout") == [Outcome.TIMEOUT_RECORDED]
    assert (await h.disbursement_row(ocid)).status == UNKNOWN  # not a failure: never re-sent under a new id

    # The caller may retry, explicitly, with the same OriginatorConversationID: it cannot pay twice.
    with pytest.raises(errors.DuplicateOriginatorConversationID):
        await h.client.b2c_payment(originator_conversation_id=ocid, phone=msisdn, amount_cents=40_000)

    assert (await h.confirmer.confirm_b2c(ocid)).verdict == Verdict.PENDING
    await h.drain()
    assert h.inbox.of("status_result") == [Outcome.CONFIRMED]
    row = await h.disbursement_row(ocid)
    assert row.status == CONFIRMED and row.transaction_receipt == h.sim.engine.books.b2c[ocid].transaction_id
    assert (await h.confirmer.confirm_b2c(ocid)).verdict == Verdict.CONFIRMED

    books = h.sim.books["b2c"]
    assert books["total_paid"] == 400 and books["paid_by_phone"] == {msisdn: 400}
    assert [t["originator_conversation_id"] for t in books["transactions"]] == [ocid]


B2C_FAILURES: list[int | str] = [
    1,
    2,
    3,
    4,
    8,
    11,
    15,
    17,
    21,
    26,
    2001,
    2006,
    2028,
    2040,
    8006,
    "SFC_IC0003",
]


async def test_every_failure_result_code_is_recorded_as_failed(h: Harness) -> None:
    phones = {code: phone() for code in B2C_FAILURES}
    for code, msisdn in phones.items():
        h.sim.set_outcome("b2c", code, phone=msisdn)
    payouts = await asyncio.gather(*(h.payout(msisdn, 100) for msisdn in phones.values()))
    await h.drain()
    assert h.inbox.of("b2c_result") == [Outcome.FAILURE_RECORDED] * len(B2C_FAILURES)
    for code, (_, ocid) in zip(phones, payouts, strict=True):
        row = await h.disbursement_row(ocid)
        assert row.status == FAILED and row.transaction_receipt is None  # TransactionID is no receipt
        assert row.result_code == (code if isinstance(code, int) else None)
    assert h.sim.books["b2c"]["total_paid"] == 0


async def test_wrong_initiator_password_fails_the_credential_check(h: Harness) -> None:
    wrong = h.make_client(initiator_password="not-the-password")
    _, ocid = await h.payout(phone(), 100, client=wrong)
    await h.drain()
    row = await h.disbursement_row(ocid)
    assert (row.status, row.result_code) == (FAILED, 2001)  # async ResultCode 2001, as Daraja does


async def test_duplicate_result_and_late_timeout_change_nothing(h: Harness) -> None:
    msisdn = phone()
    h.sim.add_fault("duplicate", api="b2c", phone=msisdn, copies=3)
    _, ocid = await h.payout(msisdn, 120)
    await h.drain()
    # Exactly one copy records the payout. Which one is not fixed: on a loaded machine the simulator
    # may stop waiting for an answer (its callback_timeout) and send the next copy while PenPay is
    # still recording the first (drain() waits for both).
    assert Counter(h.inbox.of("b2c_result")) == {Outcome.SUCCESS_RECORDED: 1, Outcome.DUPLICATE: 2}
    # A queue timeout after the result (they can cross) is stale: nothing changes.
    book = h.sim.engine.books.b2c[ocid]
    timeout = {
        "Result": {
            "ResultType": 1,
            "ResultCode": 100000000,
            "ResultDesc": "The service request timed out.",
            "OriginatorConversationID": ocid,
            "ConversationID": book.conversation_id,
        }
    }
    assert (await h.post_raw("/payments/b2c/timeout", timeout))[0] == 200
    assert h.inbox.of("b2c_timeout") == [Outcome.DUPLICATE]
    assert (await h.disbursement_row(ocid)).status == SUCCEEDED


async def test_b2c_faults_drop_late_and_unknown(h: Harness) -> None:
    dropped, late, spoofed = phone(), phone(), phone()
    h.sim.add_fault("drop", api="b2c", phone=dropped)
    h.sim.add_fault("late", api="b2c", phone=late)
    h.sim.add_fault("unknown_callback", api="b2c", phone=spoofed)
    (_, ocid_dropped), (_, ocid_late), (_, ocid_spoofed) = [
        await h.payout(p, 100) for p in (dropped, late, spoofed)
    ]
    await h.drain()
    assert (await h.disbursement_row(ocid_late)).status == SUCCEEDED
    assert (await h.disbursement_row(ocid_spoofed)).status == SUCCEEDED
    (unknown,) = [c for c in h.sim.callbacks if c["kind"] == "b2c_result_unknown"]
    assert [r.reason for r in await h.reviews(unknown["ref"])] == ["UNKNOWN_ID"]
    # The dropped result: Transaction Status settles it.
    assert (await h.disbursement_row(ocid_dropped)).status == "SENT"
    await h.confirmer.confirm_b2c(ocid_dropped)
    await h.drain()
    assert (await h.disbursement_row(ocid_dropped)).status == CONFIRMED
    assert h.sim.books["b2c"]["total_paid"] == 300


async def test_transaction_status_for_an_unknown_payout_settles_nothing(h: Harness) -> None:
    await h.client.transaction_status(originator_conversation_id="PENPAY-does-not-exist")
    await h.drain()
    assert h.inbox.of("status_result") == [Outcome.STATUS_RECORDED]


async def test_account_balance(h: Harness) -> None:
    accepted = await h.client.account_balance()
    assert accepted.response_code == "0" and accepted.conversation_id
    await h.drain()
    (delivered,) = [c for c in h.sim.callbacks if c["kind"] == "balance_result"]
    assert delivered["status"] == 200


async def test_the_status_check_takes_the_withdrawal_as_its_caller_read_it(h: Harness) -> None:
    """The saga's Transaction Status step hands over the withdrawal it read under its lock: the
    confirmer judges that evidence and reads nothing again; without it, it reads the row."""
    tx_id, ocid = await h.payout(phone(), 250)
    await h.drain()
    async with SqlUnitOfWork(h.engine, clock=h.clock) as uow:
        read = await uow.transactions.get(TransactionId(tx_id))
    assert read is not None and read.mpesa_disbursement is not None
    selects: list[str] = []

    def on_execute(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(h.engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        handed = await h.confirmer.confirm_b2c(ocid, read=read)
        assert selects == []
        looked_up = await h.confirmer.confirm_b2c(ocid)
        assert len(selects) == 1
    finally:
        event.remove(h.engine.sync_engine, "before_cursor_execute", on_execute)
    assert handed.verdict == looked_up.verdict == Verdict.PENDING  # one Transaction Status query each
