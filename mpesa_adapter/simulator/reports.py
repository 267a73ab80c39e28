"""Transaction Status and Account Balance, with their results (daraja-protocol.md sections 4 and 5)."""

from __future__ import annotations

from typing import Any

from mpesa_adapter.simulator import errors
from mpesa_adapter.simulator.b2c import ACCEPTED, FOREIGN, queue_timeout_body
from mpesa_adapter.simulator.books import B2CRecord, ReversalRecord, StkRecord
from mpesa_adapter.simulator.clock import compact
from mpesa_adapter.simulator.delivery import Delivery
from mpesa_adapter.simulator.engine import ORG_NAME, Engine
from mpesa_adapter.simulator.ids import placeholder_transaction_id
from mpesa_adapter.simulator.stk import apply_plan
from mpesa_adapter.simulator.validation import ReportRequest

BALANCE_REFERENCE = {
    "ReferenceItem": {
        "Key": "QueueTimeoutURL",
        "Value": "https://internalsandbox.safaricom.co.ke/mpesa/abresults/v1/submit",
    }
}


def _status_word(record: StkRecord | B2CRecord) -> str:
    if record.status == "pending":
        return "Initiated"
    return "Completed" if record.result_code == 0 else "Declined"


def status_parameters(engine: Engine, record: StkRecord | B2CRecord | ReversalRecord) -> list[dict[str, Any]]:
    """Shaped like the portal sample, including its duplicated DebitPartyName and a key without Value."""
    if isinstance(record, ReversalRecord):
        from mpesa_adapter.simulator.reversal import status_parameters as reversal_parameters

        return reversal_parameters(engine, record)
    finalised = compact(record.completed_at) if record.completed_at else ""
    if isinstance(record, B2CRecord):
        params: list[dict[str, Any]] = [
            {"Key": "DebitPartyName", "Value": f"{record.party_a} - {ORG_NAME}"},
            {"Key": "DebitPartyName", "Value": engine.public_name(record.phone)},
            {"Key": "OriginatorConversationID", "Value": record.originator_conversation_id},
            {"Key": "InitiatedTime", "Value": compact(record.requested_at)},
            {"Key": "DebitAccountType", "Value": "Utility Account"},
            {"Key": "DebitPartyCharges", "Value": "Fee For B2C Payment|KES|0.00"},
            {"Key": "TransactionReason"},
            {"Key": "ReasonType", "Value": "Business Payment to Customer via API"},
            {"Key": "TransactionStatus", "Value": _status_word(record)},
            {"Key": "FinalisedTime", "Value": finalised},
            {"Key": "Amount", "Value": str(record.amount)},
            {"Key": "ConversationID", "Value": record.conversation_id},
            {"Key": "ReceiptNo", "Value": record.transaction_id},
        ]
        return params
    reason = "Pay Bill Online" if record.transaction_type == "CustomerPayBillOnline" else "Buy Goods Online"
    return [
        {"Key": "DebitPartyName", "Value": engine.public_name(record.phone)},
        {"Key": "CreditPartyName", "Value": f"{record.party_b} - {ORG_NAME}"},
        {"Key": "OriginatorConversationID", "Value": record.merchant_request_id},
        {"Key": "InitiatedTime", "Value": compact(record.requested_at)},
        {"Key": "DebitAccountType", "Value": "MMF Account For Customer"},
        {"Key": "DebitPartyCharges"},
        {"Key": "TransactionReason"},
        {"Key": "ReasonType", "Value": reason},
        {"Key": "TransactionStatus", "Value": _status_word(record)},
        {"Key": "FinalisedTime", "Value": finalised},
        {"Key": "Amount", "Value": str(record.amount)},
        {"Key": "ConversationID", "Value": record.checkout_request_id},
        {"Key": "ReceiptNo", "Value": record.receipt or ""},
    ]


def _accept(engine: Engine) -> tuple[str, str, dict[str, str]]:
    now = engine.clock.now()
    ocid, conv = engine.ids.gateway_id(), engine.ids.conversation_id(now)
    return (
        ocid,
        conv,
        {
            "OriginatorConversationID": ocid,
            "ConversationID": conv,
            "ResponseCode": "0",
            "ResponseDescription": ACCEPTED,
        },
    )


def _failure(code: int | str, desc: str, ocid: str, conv: str, transaction_id: str) -> dict[str, Any]:
    return {
        "Result": {
            "ResultType": 0,
            "ResultCode": code,
            "ResultDesc": desc,
            "OriginatorConversationID": ocid,
            "ConversationID": conv,
            "TransactionID": transaction_id,
        }
    }


def transaction_status(engine: Engine, req: ReportRequest) -> dict[str, str]:
    config = engine.config
    ocid, conv, reply = _accept(engine)
    plan = engine.faults.plan("status", None, config.phone_rules)
    credential_ok = engine.check_credential(req.initiator, req.credential)

    def complete() -> list[Delivery]:
        at = engine.clock.now()
        placeholder = placeholder_transaction_id(at)
        record: StkRecord | B2CRecord | ReversalRecord | None = None
        if req.transaction_id:
            record = engine.books.by_transaction_id(req.transaction_id)
        if record is None and req.original_conversation_id:
            asked = req.original_conversation_id
            record = engine.books.b2c.get(asked) or engine.books.reversals.get(asked)
        if not credential_ok:
            body = _failure(2001, errors.B2C_RESULTS[2001], ocid, conv, placeholder)
        elif req.party_a not in config.b2c_shortcodes:
            body = _failure(21, errors.B2C_RESULTS[21], ocid, conv, placeholder)
        elif record is None:
            code = config.status_not_found_result_code
            body = _failure(code, errors.STATUS_NOT_FOUND_DESC, ocid, conv, placeholder)
        else:
            reference: dict[str, Any] = {"Key": "Occasion"}
            if req.occasion:
                reference["Value"] = req.occasion
            body = {
                "Result": {
                    "ConversationID": conv,
                    "OriginatorConversationID": ocid,
                    "ReferenceData": {"ReferenceItem": reference},
                    "ResultCode": 0,
                    "ResultDesc": errors.SUCCESS_DESC,
                    "ResultParameters": {"ResultParameter": status_parameters(engine, record)},
                    "ResultType": 0,
                    "TransactionID": placeholder,
                }
            }
            if "foreign_result" in plan:
                _about_another(engine, body["Result"]["ResultParameters"]["ResultParameter"])
            if "anonymous_result" in plan:
                params = body["Result"]["ResultParameters"]["ResultParameter"]
                named = ("OriginatorConversationID", "ConversationID")
                params[:] = [p for p in params if p["Key"] not in named]
        return [_route(engine, plan, req, body, "status_result", ocid, conv)]

    engine.dispatcher.schedule(plan.delay if plan.delay is not None else config.callback_delay, complete)
    return reply


def balance_string(working: int, utility: int) -> str:
    def account(name: str, amount: float) -> str:
        return f"{name}|KES|{amount:.2f}|{amount:.2f}|0.00|0.00"

    return "&".join(
        [
            account("Working Account", working),
            account("Float Account", 0),
            account("Utility Account", utility),
            account("Charges Paid Account", 0),
            account("Organization Settlement Account", 0),
        ]
    )


def account_balance(engine: Engine, req: ReportRequest) -> dict[str, str]:
    config = engine.config
    ocid, conv, reply = _accept(engine)
    plan = engine.faults.plan("balance", None, config.phone_rules)
    credential_ok = engine.check_credential(req.initiator, req.credential)

    def complete() -> list[Delivery]:
        at = engine.clock.now()
        placeholder = placeholder_transaction_id(at)
        # Any of the organisation's shortcodes has a balance (its own: collections land on the
        # shortcode paid, payouts leave the B2C one); another PartyA is one the initiator has no rights on.
        ours = set(config.b2c_shortcodes) | set(config.shortcodes) | set(config.tills)
        if not credential_ok or req.party_a not in ours:
            code = 2001 if not credential_ok else 21
            body = _failure(str(code), errors.B2C_RESULTS[code], ocid, conv, placeholder)
            body["Result"]["ResultType"] = "0"
        else:
            body = {
                "Result": {
                    "ResultType": "0",  # strings here, as in the portal's Account Balance sample
                    "ResultCode": "0",
                    "ResultDesc": errors.SUCCESS_DESC,
                    "OriginatorConversationID": ocid,
                    "ConversationID": conv,
                    "TransactionID": placeholder,
                    "ResultParameters": {
                        "ResultParameter": [
                            {
                                "Key": "AccountBalance",
                                "Value": balance_string(
                                    engine.books.working if req.party_a == engine.home_shortcode else 0,
                                    engine.books.utility_of(req.party_a),
                                ),
                            },
                            {"Key": "BOCompletedTime", "Value": compact(at)},
                        ]
                    },
                    "ReferenceData": BALANCE_REFERENCE,
                }
            }
        if "foreign_result" in plan:  # about another request than the one answered synchronously
            body["Result"]["OriginatorConversationID"] = engine.ids.gateway_id(FOREIGN)
            body["Result"]["ConversationID"] = engine.ids.conversation_id(at, FOREIGN)
        return [_route(engine, plan, req, body, "balance_result", ocid, conv)]

    engine.dispatcher.schedule(plan.delay if plan.delay is not None else config.callback_delay, complete)
    return reply


def _route(
    engine: Engine, plan: Any, req: ReportRequest, body: dict[str, Any], kind: str, ocid: str, conv: str
) -> Delivery:
    if "queue_timeout" in plan:
        timeout = queue_timeout_body(engine, ocid, conv)
        kind = kind.replace("_result", "_queue_timeout")
        return apply_plan(engine, plan, Delivery(req.queue_timeout_url, timeout, kind, ocid))
    return apply_plan(engine, plan, Delivery(req.result_url, body, kind, ocid))


def _about_another(engine: Engine, params: list[dict[str, Any]]) -> None:
    """Fault `foreign_result` on Transaction Status: the Occasion still echoes the request, the
    parameters describe another transaction (its ids and receipt)."""
    now = engine.clock.now()
    other = {
        "OriginatorConversationID": engine.ids.gateway_id(FOREIGN),
        "ConversationID": engine.ids.conversation_id(now, FOREIGN),
        "ReceiptNo": engine.ids.receipt(now, FOREIGN),
    }
    for item in params:
        if item["Key"] in other:
            item["Value"] = other[item["Key"]]
