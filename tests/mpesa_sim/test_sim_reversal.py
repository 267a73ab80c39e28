"""The simulator's Reversal over real sockets: a C2B payment given back once, its Result at the
ResultURL; unknown TransIDs, B2C payouts and a second reversal refused; Transaction Status knows it."""

from __future__ import annotations

from typing import Any

import pytest

from mpesa_adapter.simulator.config import SANDBOX_SHORTCODE

from .conftest import PHONE, Daraja, Receiver, params

pytestmark = pytest.mark.integration

REVERSAL = "/mpesa/reversal/v1/request"


def _body(daraja: Daraja, trans_id: str, amount: int, ocid: str, **overrides: Any) -> dict[str, Any]:
    assert daraja.receiver is not None
    body: dict[str, Any] = {
        "Initiator": "testapi",
        "SecurityCredential": daraja.sim.security_credential(),
        "CommandID": "TransactionReversal",
        "TransactionID": trans_id,
        "Amount": amount,
        "ReceiverParty": SANDBOX_SHORTCODE,
        "RecieverIdentifierType": "11",
        "ResultURL": daraja.receiver.url("reversal-result"),
        "QueueTimeOutURL": daraja.receiver.url("reversal-timeout"),
        "Remarks": "refund",
        "Occasion": ocid,
        "OriginatorConversationID": ocid,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


async def _paid(daraja: Daraja, receiver: Receiver, amount: int = 1300) -> str:
    await daraja.post(
        "/mpesa/c2b/v1/registerurl",
        {
            "ShortCode": SANDBOX_SHORTCODE,
            "ResponseType": "Completed",
            "ConfirmationURL": receiver.url("confirm"),
            "ValidationURL": receiver.url("validate"),
        },
    )
    _, paid = await daraja.control(
        "POST", "/c2b/pay", {"amount": amount, "account": "X", "phone": PHONE, "validation": False}
    )
    await daraja.sim.drain()
    return str(paid["TransID"])


async def test_a_paybill_payment_is_reversed_once_to_its_payer(daraja: Daraja, receiver: Receiver) -> None:
    trans_id = await _paid(daraja, receiver)
    before = daraja.sim.books["accounts"]["utility"]

    status, answer = await daraja.post(REVERSAL, _body(daraja, trans_id, 1300, "OURS-1"))
    assert (status, answer["ResponseCode"], answer["OriginatorConversationID"]) == (200, "0", "OURS-1")
    [result] = await receiver.wait("reversal-result")
    assert result["Result"]["ResultCode"] == 0
    assert result["Result"]["ConversationID"] == answer["ConversationID"]
    named = params(result)
    assert (named["OriginalTransactionID"], named["Amount"]) == (trans_id, 1300.0)
    assert "***" in named["CreditPartyPublicName"] and PHONE not in str(result)
    assert daraja.sim.books["accounts"]["utility"] == before - 1300

    # the same id again: Daraja's duplicate; another id: already reversed
    status, duplicate = await daraja.post(REVERSAL, _body(daraja, trans_id, 1300, "OURS-1"))
    assert (status, duplicate["errorCode"]) == (500, "500.002.1001")
    await daraja.post(REVERSAL, _body(daraja, trans_id, 1300, "OURS-2"))
    [_, second] = await receiver.wait("reversal-result", count=2)
    assert second["Result"]["ResultCode"] == "R000001"
    assert daraja.sim.books["accounts"]["utility"] == before - 1300

    # Transaction Status covers reversals: asked by our OriginatorConversationID
    await daraja.status(OriginalConversationID="OURS-1", Occasion="OURS-1")
    [status_result] = await receiver.wait("status-result")
    found = params(status_result)
    assert (found["TransactionStatus"], found["OriginatorConversationID"], found["ReceiptNo"]) == (
        "Completed",
        "OURS-1",
        result["Result"]["TransactionID"],
    )


async def test_unknown_receipts_b2c_payouts_and_bad_requests_are_refused(
    daraja: Daraja, receiver: Receiver
) -> None:
    trans_id = await _paid(daraja, receiver, 500)
    await daraja.b2c("PAYOUT-1")
    await daraja.sim.drain()
    [b2c] = daraja.sim.books["b2c"]["transactions"]
    before = daraja.sim.books["accounts"]["utility"]

    await daraja.post(REVERSAL, _body(daraja, "UL6NOSUCH1", 500, "R-1"))
    await daraja.post(REVERSAL, _body(daraja, b2c["transaction_id"], 100, "R-2"))
    await daraja.post(REVERSAL, _body(daraja, trans_id, 499, "R-3"))
    results = await receiver.wait("reversal-result", count=3)
    # the results come back in no promised order: each is matched to its request by our id
    codes = {r["Result"]["OriginatorConversationID"]: r["Result"]["ResultCode"] for r in results}
    assert codes == {"R-1": "R000002", "R-2": "R000002", "R-3": "R000003"}
    assert daraja.sim.books["accounts"]["utility"] == before

    status, bad = await daraja.post(
        REVERSAL, _body(daraja, trans_id, 500, "R-4", RecieverIdentifierType=None)
    )
    assert (status, bad["errorCode"]) == (400, "400.002.02") and "RecieverIdentifierType" in bad[
        "errorMessage"
    ]
    status, bad = await daraja.post(REVERSAL, _body(daraja, trans_id, 500, "R-5", CommandID="Reverse"))
    assert (status, bad["errorCode"]) == (400, "400.002.02")
