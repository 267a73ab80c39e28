"""A B2C result that lands while the saga holds the withdrawal is never reset by the saga's save.

The saga records the ConversationID of an accepted B2C under the transaction's row lock, rewriting the
whole `mpesa_disbursements` row; the result is recorded by the aggregate too (application.payments.
payout_evidence), under the same lock. These tests put the result exactly between the saga's read and
its save, over real MariaDB."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.shared.clock import FixedClock
from domain.shared.errors import ConcurrentModification
from domain.shared.ids import TransactionId
from mpesa_adapter.callback_parsing import parse_b2c_result
from mpesa_adapter.callback_store import SENT, SUCCEEDED
from mpesa_adapter.inbox import Delivery, Outcome
from persistence.tables import mpesa_disbursements, transactions
from persistence.transaction_repository import SqlTransactionRepository
from tests.mpesa_adapter.conftest import inbox_on, insert_user_row, phone

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


async def _withdrawal_sent(engine: AsyncEngine) -> tuple[uuid.UUID, str]:
    """A withdrawal as the saga leaves it after committing the B2C intent: SENT, no ConversationID."""
    user_id, tx_id = uuid.uuid4(), uuid.uuid4()
    ocid = f"PENPAY-{tx_id.hex}"
    async with engine.begin() as conn:
        await insert_user_row(conn, user_id, NOW)
        await conn.execute(
            insert(transactions).values(
                id=tx_id,
                user_id=user_id,
                type="WITHDRAWAL",
                status="MPESA_DISBURSEMENT_SENT",
                amount_cents=10_00,
                amount_currency="USD",
                converted_amount_cents=1_280_00,
                converted_amount_currency="KES",
                phone=phone(),
                deriv_login_id="CR90000000",
                idempotency_key_hash=secrets.token_hex(32),
                version=3,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        await conn.execute(
            insert(mpesa_disbursements).values(
                transaction_id=tx_id,
                originator_conversation_id=ocid,
                phone="254700000000",
                amount_cents=1_280_00,
                amount_currency="KES",
                status=SENT,
                created_at=NOW,
                updated_at=NOW,
            )
        )
    return tx_id, ocid


def _result(ocid: str, receipt: str) -> Any:
    body = {
        "Result": {
            "ResultType": 0,
            "ResultCode": 0,
            "ResultDesc": "The service request is processed successfully.",
            "OriginatorConversationID": ocid,
            "ConversationID": "AG_20261206_0000race",
            "TransactionID": receipt,
            "ResultParameters": {
                "ResultParameter": [
                    {"Key": "TransactionAmount", "Value": 1280},
                    {"Key": "TransactionReceipt", "Value": receipt},
                ]
            },
        }
    }
    raw = json.dumps(body).encode()
    return parse_b2c_result(json.loads(raw), raw)


async def _waits_on(conn: AsyncConnection, watcher: AsyncEngine, task: asyncio.Task[Any]) -> None:
    """Return once `task` is finished or another connection of this database is inside a locking read
    of a `transactions` row, which `conn`'s transaction holds (a condition, not a duration: the loop
    ends on what the server reports; PROCESSLIST needs no privilege for one's own connections;
    Execute: the engine's statements run prepared)."""
    holder = (await conn.execute(text("SELECT CONNECTION_ID()"))).scalar_one()
    query = text(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE()"
        " AND ID NOT IN (:holder, CONNECTION_ID()) AND COMMAND IN ('Query', 'Execute')"
        " AND INFO LIKE '%FROM transactions%FOR UPDATE%'"
    )
    while not task.done():
        async with watcher.connect() as look:
            if (await look.execute(query, {"holder": holder})).scalar_one():
                return
        await asyncio.sleep(0.01)


async def test_a_b2c_result_during_the_sagas_step_survives_its_save(db: AsyncEngine) -> None:
    tx_id, ocid = await _withdrawal_sent(db)
    store = inbox_on(db, FixedClock(NOW))
    receipt = "UL6" + secrets.token_hex(4).upper()[:7]
    async with db.begin() as conn:
        # The saga's step after the B2C call answered: the transaction under its lock, the answer applied.
        repo = SqlTransactionRepository(conn, lambda _: None)
        tx = await repo.get_for_update(TransactionId(tx_id))
        assert tx is not None
        tx.mpesa_disbursement_accepted(conversation_id="AG_20261206_0000race", now=NOW)
        # The result arrives now, before the saga saves.
        landing = asyncio.create_task(store.record_b2c_result(_result(ocid, receipt), Delivery(None, NOW)))
        await _waits_on(conn, db, landing)
        await repo.save(tx)
    assert await landing == Outcome.SUCCESS_RECORDED

    async with db.connect() as conn:
        row = (
            await conn.execute(
                mpesa_disbursements.select().where(mpesa_disbursements.c.transaction_id == tx_id)
            )
        ).one()
    assert (row.status, row.transaction_receipt, row.conversation_id) == (
        SUCCEEDED,
        receipt,
        "AG_20261206_0000race",
    )


async def test_a_save_of_a_plain_read_refuses_to_reset_a_result_recorded_since(db: AsyncEngine) -> None:
    """A reader without the row lock (a plain get) saving after a result landed: refused, not reset."""
    tx_id, ocid = await _withdrawal_sent(db)
    store = inbox_on(db, FixedClock(NOW))
    receipt = "UL7" + secrets.token_hex(4).upper()[:7]
    async with db.connect() as conn:
        repo = SqlTransactionRepository(conn, lambda _: None)
        tx = await repo.get(TransactionId(tx_id))
        assert tx is not None
        await conn.rollback()  # the read's snapshot ends; the result commits meanwhile
        assert (
            await store.record_b2c_result(_result(ocid, receipt), Delivery(None, NOW))
            == Outcome.SUCCESS_RECORDED
        )
        tx.mpesa_disbursement_accepted(conversation_id="AG_20261206_0000race", now=NOW)
        with pytest.raises(ConcurrentModification):
            await repo.save(tx)
        await conn.rollback()

    async with db.connect() as conn:
        row = (
            await conn.execute(
                mpesa_disbursements.select().where(mpesa_disbursements.c.transaction_id == tx_id)
            )
        ).one()
    assert (row.status, row.transaction_receipt) == (SUCCEEDED, receipt)
