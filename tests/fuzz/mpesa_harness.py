"""The M-Pesa side of the fuzz tests: genuine callback bodies from the Daraja simulator, rows stored as the
sagas store them, posts to the callback server, and reads of what changed."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mpesa_adapter.callback_store import SENT
from mpesa_adapter.routes import PATHS, CallbackKind
from persistence.tables import (
    domain_events,
    ledger_accounts,
    ledger_entries,
    ledger_postings,
    mpesa_disbursements,
    mpesa_requests,
    transactions,
)
from tests.fuzz.daraja_mutations import Kind
from tests.mpesa_adapter.conftest import Harness, insert_user_row, phone

AMOUNT = 80  # KES of every stored request and disbursement
STATE_TABLES = (
    mpesa_requests,
    mpesa_disbursements,
    transactions,
    domain_events,
    ledger_accounts,
    ledger_postings,
    ledger_entries,
)
# Markers put in the genuine bodies where each example's own ids go.
ID_MARK, MERCHANT_MARK, RECEIPT_MARK = "@@ID@@", "@@MERCHANT@@", "@@RECEIPT@@"


def _marked(value: Any, marks: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _marked(v, marks) for k, v in value.items()}
    if isinstance(value, list):
        return [_marked(v, marks) for v in value]
    return marks.get(value, value) if isinstance(value, str) else value


@dataclass(frozen=True)
class Genuine:
    """A body the simulator sent for a row it stored (row left SENT), and that body with id markers."""

    kind: Kind
    path: str
    body: dict[str, Any]
    correlation_id: str
    template: dict[str, Any]
    msisdn: str


async def genuine_stk(h: Harness) -> Genuine:
    msisdn = phone()
    h.sim.add_fault("drop", api="stk", phone=msisdn)  # the simulator takes the money, we deliver
    _, checkout = await h.push(msisdn, AMOUNT)
    await h.drain()
    (entry,) = h.callbacks(checkout)
    body = entry["body"]
    cb = body["Body"]["stkCallback"]
    paid = next(i["Value"] for i in cb["CallbackMetadata"]["Item"] if i["Name"] == "MpesaReceiptNumber")
    marks = {checkout: ID_MARK, cb["MerchantRequestID"]: MERCHANT_MARK, paid: RECEIPT_MARK}
    return Genuine(Kind.STK, PATHS[CallbackKind.STK], body, checkout, _marked(body, marks), msisdn)


async def genuine_b2c(h: Harness, kind: Kind) -> Genuine:
    msisdn = phone()
    if kind is Kind.B2C_TIMEOUT:
        h.sim.add_fault("queue_timeout", api="b2c", phone=msisdn)
        h.sim.add_fault("drop", api="b2c", phone=msisdn)
    else:
        h.sim.add_fault("drop", api="b2c", phone=msisdn)
    _, ocid = await h.payout(msisdn, AMOUNT)
    await h.drain()
    if kind is Kind.STATUS_RESULT:
        h.sim.add_fault("drop", api="status")
        await h.client.transaction_status(originator_conversation_id=ocid)
        await h.drain()
    wanted = {
        Kind.B2C_RESULT: "b2c_result",
        Kind.B2C_TIMEOUT: "b2c_queue_timeout",
        Kind.STATUS_RESULT: "status_result",
    }
    entries = [c for c in h.sim.callbacks if c["kind"] == wanted[kind] and ocid in str(c["body"])]
    assert entries, f"the simulator sent no {kind.value} for {ocid}: {h.sim.callbacks[-3:]}"
    body = entries[-1]["body"]
    paid = h.sim.engine.books.b2c[ocid].transaction_id
    path = {
        Kind.B2C_RESULT: PATHS[CallbackKind.B2C_RESULT],
        Kind.B2C_TIMEOUT: PATHS[CallbackKind.B2C_TIMEOUT],
        Kind.STATUS_RESULT: PATHS[CallbackKind.STATUS_RESULT],
    }[kind]
    marks = {ocid: ID_MARK, paid: RECEIPT_MARK}
    return Genuine(kind, path, body, ocid, _marked(body, marks), msisdn)


def receipt() -> str:
    """A fresh receipt number in M-Pesa's format (10 capitals and digits)."""
    return "FZ" + "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(8))


async def row_of(h: Harness, kind: Kind, correlation_id: str) -> Any:
    async with h.engine.connect() as conn:
        return await row_in(conn, kind, correlation_id)


async def row_in(conn: AsyncConnection, kind: Kind, correlation_id: str) -> Any:
    table, column = (
        (mpesa_requests, mpesa_requests.c.checkout_request_id)
        if kind is Kind.STK
        else (mpesa_disbursements, mpesa_disbursements.c.originator_conversation_id)
    )
    return (await conn.execute(select(table).where(column == correlation_id))).one()


async def store_sent(h: Harness, kind: Kind, correlation_id: str, merchant: str, msisdn: str) -> uuid.UUID:
    """A user, a transaction and its SENT request (STK) or disbursement, as the sagas store them."""
    now = h.clock.now()
    user_id, tx_id = uuid.uuid4(), uuid.uuid4()
    evidence = {
        "transaction_id": tx_id,
        "phone": msisdn,
        "amount_cents": AMOUNT * 100,
        "amount_currency": "KES",
        "status": SENT,
        "created_at": now,
        "updated_at": now,
    }
    # A withdrawal as the aggregate holds it: USD asked, the KES paid out its converted amount.
    asked: dict[str, object] = (
        {"status": "AWAITING_MPESA", "amount_cents": AMOUNT * 100, "amount_currency": "KES"}
        if kind is Kind.STK
        else {
            "status": "MPESA_DISBURSEMENT_SENT",
            "amount_cents": 62,
            "amount_currency": "USD",
            "converted_amount_cents": AMOUNT * 100,
            "converted_amount_currency": "KES",
        }
    )
    async with h.engine.begin() as conn:
        await insert_user_row(conn, user_id, now)
        await conn.execute(
            insert(transactions).values(
                id=tx_id,
                user_id=user_id,
                type="DEPOSIT" if kind is Kind.STK else "WITHDRAWAL",
                **asked,
                phone=msisdn,
                deriv_login_id="CR90000000",
                idempotency_key_hash=secrets.token_hex(32),
                version=1,
                created_at=now,
                updated_at=now,
            )
        )
        if kind is Kind.STK:
            await conn.execute(
                insert(mpesa_requests).values(
                    checkout_request_id=correlation_id, merchant_request_id=merchant, **evidence
                )
            )
        else:
            await conn.execute(
                insert(mpesa_disbursements).values(originator_conversation_id=correlation_id, **evidence)
            )
    return tx_id


async def post(h: Harness, path: str, raw: bytes, token: str | None = None, **headers: str) -> int:
    url = f"{h.server.base_url}{path}/{h.secret if token is None else token}"
    async with h.session.post(url, data=raw, headers={"Content-Type": "application/json", **headers}) as resp:
        await resp.read()
        return resp.status


async def counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            t.name: int((await conn.execute(select(func.count()).select_from(t))).scalar_one())
            for t in (transactions, ledger_accounts, ledger_postings, ledger_entries)
        }


async def untouched_transactions(engine: AsyncEngine) -> bool:
    """No callback moved a transaction's status: the saga's table does, in the saga, or for the one
    step that needs no call (a withdrawal whose payout Transaction Status confirmed completes) in the
    commit of that answer. (An answer the aggregate records raises the version; the examples check
    that a refused one does not.)"""
    started = {"DEPOSIT": "AWAITING_MPESA", "WITHDRAWAL": "MPESA_DISBURSEMENT_SENT"}
    query = select(
        transactions.c.type, transactions.c.status, mpesa_disbursements.c.status.label("paid")
    ).join(mpesa_disbursements, mpesa_disbursements.c.transaction_id == transactions.c.id, isouter=True)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return all(
        r.status == started[r.type] or (r.status == "COMPLETED" and r.paid == "CONFIRMED") for r in rows
    )


async def transaction_version(engine: AsyncEngine, tx_id: uuid.UUID) -> int:
    async with engine.connect() as conn:
        query = select(transactions.c.version).where(transactions.c.id == tx_id)
        return int((await conn.execute(query)).scalar_one())


async def snapshot(engine: AsyncEngine) -> str:
    digest = hashlib.sha256()
    async with engine.connect() as conn:
        for table in STATE_TABLES:
            rows = (await conn.execute(select(table))).all()
            digest.update(repr(sorted(map(repr, rows))).encode())
    return digest.hexdigest()
