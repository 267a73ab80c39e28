"""B2C v3 payment request, its Result and the queue timeout (daraja-protocol.md section 3)."""

from __future__ import annotations

from typing import Any

from mpesa_adapter.simulator import errors
from mpesa_adapter.simulator.books import B2CRecord
from mpesa_adapter.simulator.clock import dotted
from mpesa_adapter.simulator.delivery import Delivery
from mpesa_adapter.simulator.engine import Engine, customer_name
from mpesa_adapter.simulator.faults import draw_outcome, phone_outcome
from mpesa_adapter.simulator.stk import apply_plan
from mpesa_adapter.simulator.validation import B2C_MAX, B2C_MIN, MSISDN_RE, B2CPayment

ACCEPTED = "Accept the service request successfully."
B2C_REFERENCE = {
    "ReferenceItem": {
        "Key": "QueueTimeoutURL",
        "Value": "https://internalsandbox.safaricom.co.ke/mpesa/b2cresults/v1/submit",
    }
}


def money(amount: int) -> float:
    return float(f"{amount:.2f}")


def result_body(engine: Engine, record: B2CRecord) -> dict[str, Any]:
    code = record.result_code if record.result_code is not None else 0
    result: dict[str, Any] = {
        "ResultType": 0,
        "ResultCode": code,
        "ResultDesc": errors.B2C_RESULTS.get(code, f"Result code {code}"),
        "OriginatorConversationID": record.originator_conversation_id,
        "ConversationID": record.conversation_id,
        "TransactionID": record.transaction_id,
    }
    if code == 0:
        assert record.completed_at is not None
        result["ResultParameters"] = {
            "ResultParameter": [
                {"Key": "TransactionAmount", "Value": record.amount},
                {"Key": "TransactionReceipt", "Value": record.transaction_id},
                {"Key": "ReceiverPartyPublicName", "Value": engine.public_name(record.phone)},
                {"Key": "TransactionCompletedDateTime", "Value": dotted(record.completed_at)},
                {
                    "Key": "B2CUtilityAccountAvailableFunds",
                    "Value": money(engine.books.utility_of(record.party_a)),
                },
                {"Key": "B2CWorkingAccountAvailableFunds", "Value": money(engine.books.working)},
                {"Key": "B2CRecipientIsRegisteredCustomer", "Value": "Y"},
                {"Key": "B2CChargesPaidAccountAvailableFunds", "Value": 0.0},
            ]
        }
    result["ReferenceData"] = B2C_REFERENCE
    return {"Result": result}


def queue_timeout_body(engine: Engine, ocid: str, conversation_id: str) -> dict[str, Any]:
    """No sample is published; this shape is the anchor doc's suggestion (an assumption)."""
    return {
        "Result": {
            "ResultType": 1,
            "ResultCode": engine.config.queue_timeout_result_code,
            "ResultDesc": errors.QUEUE_TIMEOUT_DESC,
            "OriginatorConversationID": ocid,
            "ConversationID": conversation_id,
        }
    }


FOREIGN = "foreign"  # the id stream of answers about another request (faults foreign_answer/_result)


def foreign_answer(engine: Engine, answer: dict[str, str]) -> dict[str, str]:
    """Fault `foreign_answer`: the payment was accepted, the answer names another request's ids."""
    now = engine.clock.now()
    return answer | {
        "OriginatorConversationID": engine.ids.gateway_id(FOREIGN),
        "ConversationID": engine.ids.conversation_id(now, FOREIGN),
    }


def foreign_result_body(engine: Engine, record: B2CRecord) -> dict[str, Any]:
    """Fault `foreign_result`: this payout's Result, naming another payout's ids and receipt."""
    now = engine.clock.now()
    body = result_body(engine, record)
    result = body["Result"]
    receipt = engine.ids.receipt(now, FOREIGN)
    result["OriginatorConversationID"] = engine.ids.gateway_id(FOREIGN)
    result["ConversationID"] = engine.ids.conversation_id(now, FOREIGN)
    result["TransactionID"] = receipt
    for item in result.get("ResultParameters", {}).get("ResultParameter", []):
        if item["Key"] == "TransactionReceipt":
            item["Value"] = receipt
    return body


def _decide(engine: Engine, req: B2CPayment, drawn: int | str) -> int | str | None:
    if not engine.check_credential(req.initiator, req.credential):
        return 2001
    if req.party_a not in engine.config.b2c_shortcodes:
        return 21
    override = engine.faults.outcome_override("b2c", req.party_b)
    if override is not None:
        return override
    if not MSISDN_RE.match(req.party_b):
        return "SFC_IC0003"
    if engine.config.phone_rules:
        by_phone = phone_outcome("b2c", req.party_b)
        if by_phone is not None:
            return by_phone
    if req.amount < B2C_MIN:
        return 2
    if req.amount > B2C_MAX:
        return 3
    return None if drawn == 0 else drawn


def pay(engine: Engine, req: B2CPayment) -> dict[str, str]:
    config = engine.config
    if req.originator_conversation_id in engine.books.b2c:
        raise engine.error(errors.DUPLICATE_OCID)
    now = engine.clock.now()
    plan = engine.faults.plan("b2c", req.party_b, config.phone_rules)
    drawn = draw_outcome(engine.streams("b2c_outcomes"), config.b2c_outcomes)
    decided = _decide(engine, req, drawn)
    record = B2CRecord(
        originator_conversation_id=req.originator_conversation_id,
        conversation_id=engine.ids.conversation_id(now),
        transaction_id=engine.ids.receipt(now),
        command_id=req.command_id,
        party_a=req.party_a,
        phone=req.party_b,
        amount=req.amount,
        result_url=req.result_url,
        queue_timeout_url=req.queue_timeout_url,
        requested_at=now,
        recipient_name=customer_name(req.party_b),
    )
    spoof = None
    if "unknown_callback" in plan:
        spoof = (engine.ids.gateway_id(), engine.ids.conversation_id(now), engine.ids.receipt(now))
    engine.books.add_b2c(record)

    def complete() -> list[Delivery]:
        at = engine.clock.now()
        code = decided
        if code is None:
            if engine.books.utility_of(record.party_a) < record.amount:
                code = 1
            elif engine.books.paid_on(record.phone, at) + record.amount > config.daily_limit:
                code = 4
            else:
                code = 0
        if code == 0:
            engine.books.pay(record, at)
        else:
            engine.books.decline_b2c(record, code, at)
        out: list[Delivery] = []
        if "queue_timeout" in plan:
            record.queue_timed_out = True
            body = queue_timeout_body(engine, record.originator_conversation_id, record.conversation_id)
            d = Delivery(
                record.queue_timeout_url, body, "b2c_queue_timeout", record.originator_conversation_id
            )
        elif "foreign_result" in plan:
            d = Delivery(
                record.result_url,
                foreign_result_body(engine, record),
                "b2c_result_foreign",
                record.originator_conversation_id,
            )
        else:
            d = Delivery(
                record.result_url,
                result_body(engine, record),
                "b2c_result",
                record.originator_conversation_id,
            )
        out.append(apply_plan(engine, plan, d))
        if spoof is not None:
            ocid, conv, receipt = spoof
            fake = B2CRecord(
                ocid,
                conv,
                receipt,
                record.command_id,
                record.party_a,
                record.phone,
                record.amount,
                record.result_url,
                record.queue_timeout_url,
                at,
                record.recipient_name,
                status="completed",
                result_code=0,
                completed_at=at,
            )
            out.append(
                Delivery(
                    record.result_url,
                    result_body(engine, fake),
                    "b2c_result_unknown",
                    ocid,
                    notes=["unknown_callback"],
                )
            )
        return out

    engine.dispatcher.schedule(plan.delay if plan.delay is not None else config.callback_delay, complete)
    return {
        "ConversationID": record.conversation_id,
        "OriginatorConversationID": record.originator_conversation_id,
        "ResponseCode": "0",
        "ResponseDescription": ACCEPTED,
    }
