"""The review queue's personal data over a real server: no staff token reads a customer's full
MSISDN or name from a list (ListReviewQueue, SearchTransactions); the one way to the number is
RevealCustomerPhone (operator or approver, audited before it answers)."""

from __future__ import annotations

import json

import grpc
import pytest
from sqlalchemy import select

from domain.shared.ids import UserId
from penpay.ops.v1 import ops_pb2
from penpay_api.auth import APPROVER_ROLE, OPERATOR_ROLE, VIEWER_ROLE
from persistence.tables import audit_logs
from persistence.unit_of_work import SqlUnitOfWork
from tests.integration.payments_helpers import PHONE, deposit_key, new_deposit, stk_request

from .conftest import Harness, bearer

pytestmark = pytest.mark.integration

MSISDN = PHONE.value  # 254712345678
NAME = "Wanjiru"


async def deposit_under_review(api: Harness) -> str:
    """A deposit M-Pesa confirmed (its raw callback names the payer) that then needed a person."""
    account = await api.new_account()
    user_id = UserId.from_str(account.user_id)
    now = api.clock.now()
    callback = {
        "Body": {
            "stkCallback": {
                "ResultCode": 0,
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "MpesaReceiptNumber", "Value": "QKX1234567"},
                        {"Name": "PhoneNumber", "Value": int(MSISDN)},
                        {"Name": "FirstName", "Value": NAME},
                    ]
                },
                "ResultDesc": "The service request is processed successfully.",
            }
        }
    }
    async with SqlUnitOfWork(api.core.engine, clock=api.clock) as uow:
        tx = new_deposit(user_id, deposit_key(user_id, "masking"), shillings=1_000, now=now)
        tx.stk_push_sent(stk_request(tx, "ws_CO_masking", now=now), now=now)
        tx.mpesa_confirmed(
            mpesa_receipt_number="QKX1234567",
            amount=tx.amount,
            raw_callback=json.dumps(callback),
            result_desc=f"paid by {MSISDN}",
            now=now,
        )
        tx.needs_review(f"the customer {MSISDN} says the transfer never came", now=now)
        await uow.transactions.add(tx)
        await uow.commit()
    return str(tx.id)


def staff(api: Harness, name: str, role: str) -> tuple[tuple[str, str], ...]:
    token, _ = api.tokens.issue_operator_token(operator=name, now=api.clock.now(), roles=[role])
    return bearer(token)


async def test_no_staff_list_shows_a_full_msisdn_and_revealing_it_is_audited(api: Harness) -> None:
    tx_id = await deposit_under_review(api)
    for name, role in (("vera", VIEWER_ROLE), ("olga", OPERATOR_ROLE), ("amos", APPROVER_ROLE)):
        metadata = staff(api, name, role)
        queue = await api.ops.ListReviewQueue(
            ops_pb2.ListReviewQueueRequest(transaction_id=tx_id), metadata=metadata
        )
        assert [item.transaction_id for item in queue.items] == [tx_id]
        item = queue.items[0]
        assert any(a.source == "stk_callback" and a.body for a in item.provider_answers)
        shown = str(queue)  # every field of the answer, as text
        assert MSISDN not in shown and MSISDN[3:] not in shown and NAME not in shown, role
        assert "2547*****678" in shown  # masked as Safaricom shows it: still recognisable
        assert item.evidence[0].fields["mpesa_receipt_number"] == "QKX1234567"  # not personal data

        found = await api.ops.SearchTransactions(
            ops_pb2.SearchTransactionsRequest(query=MSISDN), metadata=metadata
        )
        assert [m.phone for m in found.matches] == ["2547*****678"]

    # A viewer cannot unmask it; an operator can, and the audit chain has who and why first.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.ops.RevealCustomerPhone(
            ops_pb2.RevealCustomerPhoneRequest(transaction_id=tx_id, reason="to call back"),
            metadata=staff(api, "vera", VIEWER_ROLE),
        )
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    revealed = await api.ops.RevealCustomerPhone(
        ops_pb2.RevealCustomerPhoneRequest(transaction_id=tx_id, reason="to call back"),
        metadata=staff(api, "olga", OPERATOR_ROLE),
    )
    assert revealed.phone == MSISDN
    async with api.core.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(audit_logs.c.actor, audit_logs.c.details).where(
                    audit_logs.c.action == "ops.pii_revealed"
                )
            )
        ).all()
    assert [(r.actor, json.loads(r.details)["reason"]) for r in rows] == [("operator:olga", "to call back")]
