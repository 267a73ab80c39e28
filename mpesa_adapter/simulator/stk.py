"""M-Pesa Express: STK Push, its callback, and STK Query (daraja-protocol.md section 2)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mpesa_adapter.simulator import errors
from mpesa_adapter.simulator.books import StkRecord
from mpesa_adapter.simulator.clock import EAT, compact
from mpesa_adapter.simulator.delivery import Delivery
from mpesa_adapter.simulator.engine import Engine
from mpesa_adapter.simulator.faults import Plan, draw_outcome, phone_outcome
from mpesa_adapter.simulator.validation import STK_MAX, STK_MIN, StkPush

ACCEPTED = "Success. Request accepted for processing"


def result_desc(code: int | str) -> str:
    return errors.STK_RESULTS.get(code, f"Result code {code}")


def callback_body(
    merchant_request_id: str,
    checkout_request_id: str,
    code: int | str,
    amount: int | None = None,
    receipt: str | None = None,
    completed_at: datetime | None = None,
    phone: str | int | None = None,
) -> dict[str, Any]:
    """The stkCallback envelope; CallbackMetadata only on success (ResultCode 0)."""
    callback: dict[str, Any] = {
        "MerchantRequestID": merchant_request_id,
        "CheckoutRequestID": checkout_request_id,
        "ResultCode": code,
        "ResultDesc": result_desc(code),
    }
    if code == 0:
        assert amount is not None and receipt is not None and completed_at is not None
        callback["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": float(amount)},
                {"Name": "MpesaReceiptNumber", "Value": receipt},
                {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": int(compact(completed_at))},
                {"Name": "PhoneNumber", "Value": phone},
            ]
        }
    return {"Body": {"stkCallback": callback}}


def query_body(record: StkRecord) -> dict[str, str]:
    code = record.result_code if record.result_code is not None else ""
    return {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successfully",
        "MerchantRequestID": record.merchant_request_id,
        "CheckoutRequestID": record.checkout_request_id,
        "ResultCode": str(code),
        "ResultDesc": result_desc(code),
    }


def foreign_query_body(engine: Engine, params: dict[str, Any]) -> dict[str, str]:
    """Fault `foreign_answer`: an STK Query answer about a checkout nobody asked about (completed,
    unless params.result_code says otherwise). Ids from their own stream: the seed's others stay put."""
    rng = engine.streams("foreign")
    stamp = engine.clock.now().astimezone(EAT).strftime("%d%m%Y%H%M%S")
    code = errors.parse_code(params.get("result_code", 0))
    return {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successfully",
        "MerchantRequestID": engine.ids.gateway_id("foreign"),
        "CheckoutRequestID": f"ws_CO_{stamp}{rng.randrange(10**12):012d}",
        "ResultCode": str(code),
        "ResultDesc": result_desc(code),
    }


def _decide(engine: Engine, req: StkPush, drawn: int | str) -> int | str | None:
    """Outcome fixed at acceptance, or None to decide by the books at completion."""
    override = engine.faults.outcome_override("stk", req.phone)
    if override is not None:
        return override
    if engine.config.phone_rules:
        by_phone = phone_outcome("stk", req.phone)
        if by_phone is not None:
            return by_phone
    if req.amount < STK_MIN:
        return 2
    if req.amount > STK_MAX:
        return 3
    if req.transaction_type == "CustomerPayBillOnline" and req.party_b != req.shortcode:
        return 2028
    tills = engine.config.tills.get(req.shortcode)
    if req.transaction_type == "CustomerBuyGoodsOnline" and tills is not None and req.party_b not in tills:
        return 2028
    window = engine.config.repeat_rule_seconds
    if window > 0:
        now = engine.clock.now()
        for r in engine.books.stk.values():
            if (
                r.phone == req.phone
                and r.amount == req.amount
                and (now - r.requested_at).total_seconds() < window
                and r.result_code in (None, 0)
            ):
                return 17
    return None if drawn == 0 else drawn


def push(engine: Engine, req: StkPush) -> dict[str, str]:
    """Accept a validated push: record it, schedule its completion and callback, answer synchronously."""
    config = engine.config
    if config.subscriber_lock and engine.books.pending_push_for(req.phone):
        raise engine.error(errors.SUBSCRIBER_LOCKED)
    now = engine.clock.now()
    plan = engine.faults.plan("stk", req.phone, config.phone_rules)
    drawn = draw_outcome(engine.streams("outcomes"), config.stk_outcomes)
    decided = _decide(engine, req, drawn)
    record = StkRecord(
        checkout_request_id=engine.ids.checkout_request_id(now, req.phone),
        merchant_request_id=engine.ids.gateway_id(),
        shortcode=req.shortcode,
        transaction_type=req.transaction_type,
        party_b=req.party_b,
        phone=req.phone,
        amount=req.amount,
        account_reference=req.account_reference,
        callback_url=req.callback_url,
        requested_at=now,
        receipt_candidate=engine.ids.receipt(now),
    )
    spoof = None
    if "unknown_callback" in plan:
        spoof = (
            engine.ids.gateway_id(),
            engine.ids.checkout_request_id(now, req.phone),
            engine.ids.receipt(now),
        )
    engine.books.add_stk(record)

    def complete() -> list[Delivery]:
        at = engine.clock.now()
        code = decided
        if code is None:
            charged = engine.books.charged_on(record.phone, at)
            code = 4 if charged + record.amount > config.daily_limit else 0
        if code == 0:
            engine.books.charge(record, at)
        else:
            engine.books.decline_stk(record, code, at)
        body = callback_body(
            record.merchant_request_id,
            record.checkout_request_id,
            code,
            record.amount,
            record.receipt,
            at,
            engine.display_phone(record.phone),
        )
        out = [
            apply_plan(
                engine, plan, Delivery(record.callback_url, body, "stk_callback", record.checkout_request_id)
            )
        ]
        if spoof is not None:
            mrid, crid, receipt = spoof
            fake = callback_body(
                mrid, crid, 0, record.amount, receipt, at, engine.display_phone(record.phone)
            )
            out.append(
                Delivery(record.callback_url, fake, "stk_callback_unknown", crid, notes=["unknown_callback"])
            )
        return out

    engine.dispatcher.schedule(plan.delay if plan.delay is not None else config.callback_delay, complete)
    return {
        "MerchantRequestID": record.merchant_request_id,
        "CheckoutRequestID": record.checkout_request_id,
        "ResponseCode": "0",
        "ResponseDescription": ACCEPTED,
        "CustomerMessage": ACCEPTED,
    }


def apply_plan(engine: Engine, plan: Plan, d: Delivery) -> Delivery:
    if "drop" in plan:
        d.drop = True
    if "duplicate" in plan:
        d.copies = plan.copies
    if "late" in plan:
        d.extra_delay += engine.config.late_delay
    if "out_of_order" in plan:
        d.hold = True
    d.notes.extend(sorted(plan.kinds))
    return d


def query(engine: Engine, checkout_request_id: str) -> dict[str, str]:
    record = engine.books.stk.get(checkout_request_id)
    if record is None:
        raise engine.error(errors.STK_UNKNOWN)
    if record.status == "pending":
        raise engine.error(errors.STK_PENDING, request_id=checkout_request_id)
    return query_body(record)


def spoof_callback(engine: Engine, url: str, code: int | str, amount: int, phone: str) -> Delivery:
    """A callback for a CheckoutRequestID the simulator never issued (control API)."""
    now = engine.clock.now()
    d = Delivery(
        url,
        callback_body(
            engine.ids.gateway_id(),
            engine.ids.checkout_request_id(now, phone),
            code,
            amount,
            engine.ids.receipt(now),
            now,
            engine.display_phone(phone),
        ),
        "stk_callback_unknown",
        "",
        notes=["unknown_callback"],
    )
    d.ref = d.body["Body"]["stkCallback"]["CheckoutRequestID"]
    engine.dispatcher.send(d)
    return d
