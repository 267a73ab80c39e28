"""C2B (paybill) collections: Register URL, a customer paying the paybill, validation, confirmation.

Daraja's side of a paybill payment, as the simulator plays it:
- `POST /mpesa/c2b/v1/registerurl` (v2 too) registers a shortcode's ValidationURL, ConfirmationURL and
  ResponseType (`Completed` | `Cancelled`, exactly so: what M-Pesa does when the ValidationURL cannot
  be reached or answers badly). A later registration replaces an earlier one (the sandbox's behaviour).
- The control API's `POST /__control__/c2b/pay` stands for the customer's phone: the customer pays
  `amount` to `shortcode` with the account number `account` (BillRefNumber). With external validation
  on (the default; `c2b_external_validation`, or `"validation": false` per payment) M-Pesa first asks
  the ValidationURL and completes only on ResultCode "0"; then it moves the money (the utility account
  collects it, the books keep it for Pull Transactions) and posts the confirmation (callback faults of
  api "c2b" apply: duplicate, drop, late, ...).
- MSISDN: masked as `0722***000` by default (`c2b_msisdn`: "masked" | "full"), the 2026 rollout's form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from mpesa_adapter.simulator import errors
from mpesa_adapter.simulator.books import C2BRecord
from mpesa_adapter.simulator.clock import compact
from mpesa_adapter.simulator.delivery import Delivery
from mpesa_adapter.simulator.validation import msisdn, shortcode, valid_url

if TYPE_CHECKING:
    from mpesa_adapter.simulator.engine import Engine

REGISTER_PATHS = ("/mpesa/c2b/v1/registerurl", "/mpesa/c2b/v2/registerurl")
RESPONSE_TYPES = ("Completed", "Cancelled")
ACCEPT = "0"


@dataclass(frozen=True)
class Registration:
    shortcode: str
    response_type: str
    confirmation_url: str
    validation_url: str


class C2BRegistry:
    """The shortcodes' registered URLs. Survives a books reset, as a registration does at Safaricom."""

    def __init__(self) -> None:
        self.urls: dict[str, Registration] = {}

    def public(self) -> dict[str, Any]:
        return {code: vars(reg) for code, reg in self.urls.items()}


def register(engine: Engine, body: Any) -> dict[str, str]:
    if not isinstance(body, dict):
        raise errors.invalid_payload()
    code = shortcode(body.get("ShortCode"))
    if code is None or code not in _paybills(engine):
        raise errors.bad_request("ShortCode")
    response_type = body.get("ResponseType")
    if response_type not in RESPONSE_TYPES:
        raise errors.bad_request("ResponseType")
    ban = engine.config.ban_url_keywords
    for key in ("ConfirmationURL", "ValidationURL"):
        if not valid_url(body.get(key), ban):
            raise errors.bad_request(key)
    engine.c2b.urls[code] = Registration(code, response_type, body["ConfirmationURL"], body["ValidationURL"])
    return {
        "OriginatorCoversationID": engine.ids.gateway_id(),  # sic: Daraja's spelling
        "ResponseCode": "0",
        "ResponseDescription": "Success",
    }


def _paybills(engine: Engine) -> set[str]:
    return set(engine.config.shortcodes) | set(engine.config.tills)


def shown_msisdn(engine: Engine, phone: str) -> str:
    if engine.config.c2b_msisdn == "full":
        return phone
    return f"0{phone[3:6]}***{phone[-3:]}"


def notification(engine: Engine, record: C2BRecord, balance: str = "") -> dict[str, Any]:
    """The body M-Pesa posts to both URLs (ConfirmationURL adds the organisation's balance)."""
    first, middle, last = record.payer_name.split(" ")
    return {
        "TransactionType": "Pay Bill",
        "TransID": record.trans_id,
        "TransTime": compact(record.requested_at),
        "TransAmount": f"{record.amount}.00",
        "BusinessShortCode": record.shortcode,
        "BillRefNumber": record.bill_ref,
        "InvoiceNumber": "",
        "OrgAccountBalance": balance,
        "ThirdPartyTransID": "",
        "MSISDN": shown_msisdn(engine, record.phone),
        "FirstName": first,
        "MiddleName": middle,
        "LastName": last,
    }


@dataclass(frozen=True)
class PaymentRequest:
    shortcode: str
    phone: str
    amount: int
    bill_ref: str
    validation: bool
    copies: int


def payment_request(engine: Engine, body: dict[str, Any]) -> PaymentRequest:
    """The control call's body, checked (ValueError with what is wrong)."""
    from mpesa_adapter.simulator.config import SANDBOX_PHONE, SANDBOX_SHORTCODE

    code = str(body.get("shortcode", SANDBOX_SHORTCODE))
    phone = msisdn(body.get("phone", SANDBOX_PHONE))
    amount = body.get("amount")
    account = body.get("account", "")
    copies = body.get("copies", 1)
    validation = body.get("validation", engine.config.c2b_external_validation)
    if phone is None:
        raise ValueError("phone must be 254(7|1)XXXXXXXX")
    if not isinstance(amount, int) or isinstance(amount, bool) or not 1 <= amount <= 250_000:
        raise ValueError("amount must be whole shillings, 1..250000")
    if not isinstance(account, str) or len(account) > 20:
        raise ValueError("account must be a string of at most 20 characters")
    if not isinstance(copies, int) or not 1 <= copies <= 5:
        raise ValueError("copies must be 1..5")
    if not isinstance(validation, bool):
        raise ValueError("validation must be a boolean")
    if code not in engine.c2b.urls:
        raise ValueError(f"no URLs are registered for shortcode {code}")
    return PaymentRequest(code, phone, amount, account, validation, copies)


async def pay(engine: Engine, req: PaymentRequest) -> dict[str, Any]:
    """The customer pays the paybill: validation (if on), then the money moves and the confirmation goes."""
    from mpesa_adapter.simulator.engine import customer_name

    reg = engine.c2b.urls[req.shortcode]
    now = engine.clock.now()
    record = C2BRecord(
        trans_id=engine.ids.receipt(now),
        shortcode=req.shortcode,
        phone=req.phone,
        amount=req.amount,
        bill_ref=req.bill_ref,
        payer_name=customer_name(req.phone),
        requested_at=now,
    )
    engine.books.add_c2b(record)
    validation = "skipped"
    if req.validation:
        validation, code = await _validate(engine, reg, notification(engine, record))
        if validation == "rejected" or (validation == "unreachable" and reg.response_type == "Cancelled"):
            engine.books.decline_c2b(record, code, engine.clock.now())
            return {"TransID": record.trans_id, "status": "declined", "validation": validation, "code": code}
    engine.books.collect(record, engine.clock.now())
    body = notification(engine, record, balance=f"{engine.books.utility_of(record.shortcode)}.00")
    plan = engine.faults.plan("c2b", req.phone, engine.config.phone_rules)
    from mpesa_adapter.simulator.stk import apply_plan

    delivery = apply_plan(
        engine, plan, Delivery(reg.confirmation_url, body, "c2b_confirmation", record.trans_id)
    )
    if req.copies > 1:
        delivery.copies = max(delivery.copies, req.copies)
    engine.dispatcher.send(delivery)
    return {"TransID": record.trans_id, "status": "completed", "validation": validation, "body": body}


async def _validate(engine: Engine, reg: Registration, body: dict[str, Any]) -> tuple[str, str]:
    """Ask the ValidationURL: ("accepted" | "rejected" | "unreachable", the ResultCode it gave)."""
    timeout = aiohttp.ClientTimeout(total=engine.config.callback_timeout)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(reg.validation_url, json=body) as resp:
                text = await resp.text()
                status = resp.status
    except (aiohttp.ClientError, TimeoutError):
        return "unreachable", ""
    _log_validation(engine, reg, body, status)
    if status != 200:
        return "unreachable", ""
    try:
        answer = json.loads(text)
    except ValueError:
        return "unreachable", ""
    code = str(answer.get("ResultCode", "")) if isinstance(answer, dict) else ""
    return ("accepted" if code == ACCEPT else "rejected"), code


def _log_validation(engine: Engine, reg: Registration, body: dict[str, Any], status: int) -> None:
    engine.dispatcher.log.append(
        {
            "seq": next(engine.dispatcher._seq),
            "at": engine.clock.now().isoformat(),
            "kind": "c2b_validation",
            "ref": body["TransID"],
            "url": reg.validation_url,
            "copy": 1,
            "status": status,
            "error": None,
            "notes": [],
            "body": body,
        }
    )
