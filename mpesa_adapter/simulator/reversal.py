"""Reversal of a C2B payment back to its payer, with its Result (inferred contract: see validation.reversal).

M-Pesa's rules as the simulator plays them: only a completed C2B payment to the receiver shortcode
(a paybill payment, or an STK push charged for it) can be reversed, once, for its whole amount; a
B2C payout or a receipt M-Pesa does not know is refused (R000002), one reversed or being reversed
already R000001, another amount R000003. The answer is the usual sync acknowledgement; the Result
follows at the ResultURL (callback faults of api "reversal" apply: drop, duplicate, delay, ...).
A caller-sent OriginatorConversationID is used as the request's (B2C v3's rule, reused twice is
500.002.1001); without one the gateway makes one.
"""

from __future__ import annotations

from typing import Any

from mpesa_adapter.simulator import errors
from mpesa_adapter.simulator.b2c import ACCEPTED, money, queue_timeout_body
from mpesa_adapter.simulator.books import B2CRecord, ReversalRecord
from mpesa_adapter.simulator.c2b import shown_msisdn
from mpesa_adapter.simulator.clock import compact
from mpesa_adapter.simulator.delivery import Delivery
from mpesa_adapter.simulator.engine import ORG_NAME, Engine, customer_name
from mpesa_adapter.simulator.stk import apply_plan
from mpesa_adapter.simulator.validation import ReversalRequest

REFERENCE = {
    "ReferenceItem": {
        "Key": "QueueTimeoutURL",
        "Value": "https://internalsandbox.safaricom.co.ke/mpesa/reversalresults/v1/submit",
    }
}


def _original(engine: Engine, trans_id: str) -> tuple[str, int, str] | None:
    """(shortcode, amount, payer phone) of a completed C2B payment, or None (unknown, or a B2C)."""
    c2b = engine.books.c2b.get(trans_id)
    if c2b is not None and c2b.collected:
        return c2b.shortcode, c2b.amount, c2b.phone
    record = engine.books.by_transaction_id(trans_id)
    if record is None or isinstance(record, B2CRecord | ReversalRecord):
        return None  # a B2C cannot be reversed through the API (daraja-protocol.md 3.4)
    if not record.charged:
        return None
    return record.party_b, record.amount, record.phone


def _payer(engine: Engine, phone: str) -> str:
    """The payer as C2B shows them (masked since 2026, c2b_msisdn), with their registered name."""
    return f"{shown_msisdn(engine, phone)} - {customer_name(phone)}"


def _decide(engine: Engine, req: ReversalRequest) -> int | str:
    if not engine.check_credential(req.initiator, req.credential):
        return 2001
    original = _original(engine, req.transaction_id)
    if original is None or original[0] != req.receiver_party:
        return "R000002"
    if engine.books.reversal_of(req.transaction_id) is not None:
        return "R000001"
    if req.amount != original[1]:
        return "R000003"
    return 0


def result_body(engine: Engine, record: ReversalRecord, phone: str | None) -> dict[str, Any]:
    code = record.result_code if record.result_code is not None else 0
    result: dict[str, Any] = {
        "ResultType": 0,
        "ResultCode": code,
        "ResultDesc": errors.REVERSAL_RESULTS.get(code, f"Result code {code}"),
        "OriginatorConversationID": record.originator_conversation_id,
        "ConversationID": record.conversation_id,
        "TransactionID": record.transaction_id,
    }
    if code == 0:
        assert record.completed_at is not None and phone is not None
        result["ResultParameters"] = {
            "ResultParameter": [
                {
                    "Key": "DebitAccountBalance",
                    "Value": f"Utility Account|KES|{money(engine.books.utility_of(record.shortcode)):.2f}",
                },
                {"Key": "Amount", "Value": money(record.amount)},
                {"Key": "TransCompletedTime", "Value": int(compact(record.completed_at))},
                {"Key": "OriginalTransactionID", "Value": record.original_trans_id},
                {"Key": "Charge", "Value": 0.0},
                {"Key": "CreditPartyPublicName", "Value": _payer(engine, phone)},
                {"Key": "DebitPartyPublicName", "Value": f"{record.shortcode} - {ORG_NAME}"},
            ]
        }
    result["ReferenceData"] = REFERENCE
    return {"Result": result}


def reverse(engine: Engine, req: ReversalRequest) -> dict[str, str]:
    now = engine.clock.now()
    ocid = req.originator_conversation_id or engine.ids.gateway_id()
    if ocid in engine.books.reversals:
        raise engine.error(errors.DUPLICATE_OCID)
    plan = engine.faults.plan("reversal", None, engine.config.phone_rules)
    record = ReversalRecord(
        originator_conversation_id=ocid,
        conversation_id=engine.ids.conversation_id(now),
        transaction_id=engine.ids.receipt(now),
        original_trans_id=req.transaction_id,
        shortcode=req.receiver_party,
        amount=req.amount,
        result_url=req.result_url,
        queue_timeout_url=req.queue_timeout_url,
        requested_at=now,
    )
    decided = _decide(engine, req)  # judged when taken: a second request meets the first
    engine.books.add_reversal(record)

    def complete() -> list[Delivery]:
        at = engine.clock.now()
        original = _original(engine, record.original_trans_id)
        code = decided
        if code == 0 and engine.books.utility_of(record.shortcode) < record.amount:
            code = 1
        if code == 0:
            engine.books.reverse(record, at)
        else:
            engine.books.decline_reversal(record, code, at)
        if "queue_timeout" in plan:
            body = queue_timeout_body(engine, record.originator_conversation_id, record.conversation_id)
            d = Delivery(record.queue_timeout_url, body, "reversal_queue_timeout", ocid)
        else:
            phone = original[2] if original else None
            d = Delivery(record.result_url, result_body(engine, record, phone), "reversal_result", ocid)
        return [apply_plan(engine, plan, d)]

    engine.dispatcher.schedule(
        plan.delay if plan.delay is not None else engine.config.callback_delay, complete
    )
    return {
        "OriginatorConversationID": ocid,
        "ConversationID": record.conversation_id,
        "ResponseCode": "0",
        "ResponseDescription": ACCEPTED,
    }


def status_parameters(engine: Engine, record: ReversalRecord) -> list[dict[str, Any]]:
    """Transaction Status about a reversal (shaped like the portal's B2C sample; inferred)."""
    word = "Initiated" if record.status == "pending" else ("Completed" if record.reversed else "Declined")
    original = _original(engine, record.original_trans_id)
    payer = _payer(engine, original[2]) if original else customer_name(record.original_trans_id)
    return [
        {"Key": "DebitPartyName", "Value": f"{record.shortcode} - {ORG_NAME}"},
        {"Key": "CreditPartyName", "Value": payer},
        {"Key": "OriginatorConversationID", "Value": record.originator_conversation_id},
        {"Key": "InitiatedTime", "Value": compact(record.requested_at)},
        {"Key": "DebitAccountType", "Value": "Utility Account"},
        {"Key": "DebitPartyCharges"},
        {"Key": "TransactionReason"},
        {"Key": "ReasonType", "Value": "Reversal"},
        {"Key": "TransactionStatus", "Value": word},
        {"Key": "FinalisedTime", "Value": compact(record.completed_at) if record.completed_at else ""},
        {"Key": "Amount", "Value": str(record.amount)},
        {"Key": "ConversationID", "Value": record.conversation_id},
        {"Key": "ReceiptNo", "Value": record.transaction_id if record.reversed else ""},
    ]
