"""Strict JSON and typed callback objects (daraja-protocol.md 2.4, 3.4, 3.5, 4, 11).

Strict: UTF-8 only, one JSON object at the top, no duplicate object keys, no NaN/Infinity, numbers with a
fraction parsed as Decimal (amounts are never floats). Tolerant where Daraja varies: ResultCode as a
number or a string (or a non-numeric code like SFC_IC0003), metadata items without Value, items in any
order, ResultParameter / ReferenceItem as an object or a list, duplicated parameter Keys, a masked phone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

Scalar = str | int | Decimal | bool | None
_MASKED = re.compile(r"[*xX#]")


class MalformedCallback(ValueError):
    """Not JSON we accept, or not the shape of this callback."""


def strict_json(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedCallback("body is not UTF-8") from None

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise MalformedCallback(f"duplicate key {key!r}")
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise MalformedCallback(f"{name} is not JSON")

    try:
        data = json.loads(text, object_pairs_hook=pairs, parse_constant=constant, parse_float=Decimal)
    except MalformedCallback:
        raise
    except (ValueError, RecursionError) as exc:
        raise MalformedCallback(f"invalid JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise MalformedCallback("body is not a JSON object")
    if "\\u" in text and _has_lone_surrogate(data):
        raise MalformedCallback("a string holds a lone surrogate (\\ud800-\\udfff escape)")
    return data


def _has_lone_surrogate(data: Any) -> bool:
    """A \\ud800 escape alone is valid JSON text but no Unicode character (I-JSON, RFC 7493 2.1 refuses
    it): no database or log encoding can hold it. Only an escape can make one; UTF-8 input cannot."""
    stack = [data]
    while stack:  # iterative: the parser allows nesting deeper than a recursive walk could go
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# --- field helpers ----------------------------------------------------------------------


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedCallback(f"{what} is not an object")
    return value


def _only_key(data: dict[str, Any], key: str) -> dict[str, Any]:
    if set(data) != {key}:
        raise MalformedCallback(f"expected exactly {{{key!r}}} at the top, got {sorted(data)}")
    return _obj(data[key], key)


def _str(data: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise MalformedCallback(f"{key} missing")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedCallback(f"{key} is not a string")
    text = str(value).strip()
    if not text or len(text) > 64:
        raise MalformedCallback(f"{key} is empty or too long")
    return text


def result_code(value: Any, key: str = "ResultCode") -> str:
    """A code of at most 32 characters, as text ("0", "1032", "SFC_IC0003")."""
    if isinstance(value, bool) or value is None:
        raise MalformedCallback(f"{key} missing or not a code")
    if isinstance(value, Decimal):
        # adjusted() first: int(Decimal("1e999999")) would be a million digits
        if value.adjusted() >= 32 or value != value.to_integral_value():
            raise MalformedCallback(f"{key} is not an integer code")
        value = int(value)
    if isinstance(value, int):
        text = str(value)
        if len(text) > 32:
            raise MalformedCallback(f"{key} is too long")
        return text
    if isinstance(value, str) and value.strip() and len(value) <= 32:
        text = value.strip()
        return str(int(text)) if text.lstrip("-").isdigit() else text
    raise MalformedCallback(f"{key} is not a code")


def _desc(data: dict[str, Any], key: str = "ResultDesc") -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise MalformedCallback(f"{key} is not a string")
    return value[:255]


def _scalar(value: Any, what: str) -> Scalar:
    if value is None or isinstance(value, str | int | Decimal | bool):
        return value
    raise MalformedCallback(f"{what} value is not a scalar")


def amount(value: Scalar) -> Decimal | None:
    """A callback amount (1, 1.00, "300", 10500.00) as an exact Decimal; None if absent or not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = Decimal(str(value).strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def cents(value: Decimal | None) -> int | None:
    """Exact KES -> cents, or None when it is not a whole number of cents (or absurdly large or small).

    Exact: Decimal arithmetic rounds to 28 digits (80.000...0001 would become 80), and overflows on
    1e999999; a Fraction does neither, and the exponent bound keeps its integers small."""
    if value is None or not value.is_finite() or not -30 <= value.adjusted() <= 30:
        return None
    exact = Fraction(value) * 100
    return exact.numerator if exact.denominator == 1 else None


def _pairs(container: Any, list_key: str, name_key: str, what: str) -> tuple[tuple[str, Scalar], ...]:
    """{"Item": [{"Name": .., "Value": ..}, ..]} -> ((name, value), ..). One object instead of a list is
    accepted; a missing Value is None; names may repeat."""
    if container is None:
        return ()
    items = _obj(container, what).get(list_key)
    if items is None:
        return ()
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise MalformedCallback(f"{what}.{list_key} is not a list")
    out: list[tuple[str, Scalar]] = []
    for item in items:
        entry = _obj(item, f"{what} item")
        name = entry.get(name_key)
        if not isinstance(name, str):
            raise MalformedCallback(f"{what} item without {name_key}")
        out.append((name, _scalar(entry.get("Value"), name)))
    return tuple(out)


def _first(pairs: tuple[tuple[str, Scalar], ...], *names: str) -> Scalar:
    for wanted in names:
        for name, value in pairs:
            if name == wanted and value is not None:
                return value
    return None


def _text(value: Scalar) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    return str(value).strip() or None


# --- typed callbacks --------------------------------------------------------------------


@dataclass(frozen=True)
class StkCallback:
    merchant_request_id: str
    checkout_request_id: str
    result_code: str
    result_desc: str
    amount: Decimal | None = None
    receipt: str | None = None
    transaction_date: str | None = None
    phone: str | None = None  # None when absent or masked; see phone_masked
    phone_masked: bool = False
    phone_shown: str | None = None  # the masked number as sent (its visible digits are still compared)
    raw: bytes = field(default=b"", repr=False)

    @property
    def succeeded(self) -> bool:
        return self.result_code == "0"


def parse_stk_callback(data: dict[str, Any], raw: bytes) -> StkCallback:
    body = _only_key(data, "Body")
    if set(body) != {"stkCallback"}:
        raise MalformedCallback("Body must hold exactly stkCallback")
    cb = _obj(body["stkCallback"], "stkCallback")
    items = _pairs(cb.get("CallbackMetadata"), "Item", "Name", "CallbackMetadata")
    phone_raw = _text(_first(items, "PhoneNumber"))
    masked = phone_raw is not None and bool(_MASKED.search(phone_raw))
    return StkCallback(
        merchant_request_id=_str(cb, "MerchantRequestID") or "",
        checkout_request_id=_str(cb, "CheckoutRequestID") or "",
        result_code=result_code(cb.get("ResultCode")),
        result_desc=_desc(cb),
        amount=amount(_first(items, "Amount")),
        receipt=_text(_first(items, "MpesaReceiptNumber")),
        transaction_date=_text(_first(items, "TransactionDate")),
        phone=None if masked else phone_raw,
        phone_masked=masked,
        # Whole: judged on what was detected as masked (a cut could drop the mask and leave an
        # arbitrary head to be compared as a whole number). Nothing stores it.
        phone_shown=phone_raw if masked else None,
        raw=raw,
    )


@dataclass(frozen=True)
class ResultEnvelope:
    """The `{"Result": {...}}` body shared by B2C results, queue timeouts and Transaction Status results."""

    result_type: str | None
    result_code: str
    result_desc: str
    originator_conversation_id: str | None
    conversation_id: str | None
    transaction_id: str | None
    parameters: tuple[tuple[str, Scalar], ...]
    reference: tuple[tuple[str, Scalar], ...]
    raw: bytes = field(default=b"", repr=False)

    @property
    def succeeded(self) -> bool:
        return self.result_code == "0"

    def param(self, *names: str) -> Scalar:
        return _first(self.parameters, *names)

    def ref(self, *names: str) -> Scalar:
        return _first(self.reference, *names)


def parse_result(data: dict[str, Any], raw: bytes, *, require_ocid: bool = True) -> ResultEnvelope:
    result = _only_key(data, "Result")
    result_type = result.get("ResultType")
    return ResultEnvelope(
        result_type=None if result_type is None else result_code(result_type, "ResultType"),
        result_code=result_code(result.get("ResultCode")),
        result_desc=_desc(result),
        originator_conversation_id=_str(result, "OriginatorConversationID", required=require_ocid),
        conversation_id=_str(result, "ConversationID", required=False),
        transaction_id=_str(result, "TransactionID", required=False),
        parameters=_pairs(result.get("ResultParameters"), "ResultParameter", "Key", "ResultParameters"),
        reference=_pairs(result.get("ReferenceData"), "ReferenceItem", "Key", "ReferenceData"),
        raw=raw,
    )


@dataclass(frozen=True)
class B2CResult:
    envelope: ResultEnvelope
    originator_conversation_id: str
    conversation_id: str | None
    amount: Decimal | None
    receipt: str | None  # TransactionReceipt, on ResultCode 0 only
    receiver: str | None

    @property
    def succeeded(self) -> bool:
        return self.envelope.succeeded

    @property
    def raw(self) -> bytes:
        return self.envelope.raw


def parse_b2c_result(data: dict[str, Any], raw: bytes) -> B2CResult:
    env = parse_result(data, raw)
    return B2CResult(
        envelope=env,
        originator_conversation_id=env.originator_conversation_id or "",
        conversation_id=env.conversation_id,
        amount=amount(env.param("TransactionAmount", "Amount")),
        receipt=_text(env.param("TransactionReceipt")) if env.succeeded else None,
        receiver=_text(env.param("ReceiverPartyPublicName")),
    )


@dataclass(frozen=True)
class B2CQueueTimeout:
    """No published sample; modelled on the Result envelope (our assumption, daraja-protocol.md 3.5)."""

    envelope: ResultEnvelope
    originator_conversation_id: str
    conversation_id: str | None

    @property
    def raw(self) -> bytes:
        return self.envelope.raw


def parse_b2c_timeout(data: dict[str, Any], raw: bytes) -> B2CQueueTimeout:
    env = parse_result(data, raw)
    return B2CQueueTimeout(env, env.originator_conversation_id or "", env.conversation_id)


@dataclass(frozen=True)
class TransactionStatusResult:
    envelope: ResultEnvelope
    # The transaction asked about: from ResultParameters (or the echoed Occasion), not the query's own id.
    subject_originator_conversation_id: str | None
    receipt: str | None
    amount: Decimal | None
    transaction_status: str | None  # Completed / Cancelled / Declined / Expired / ...
    # Our own words echoed back: the Occasion we sent (the id we asked about), and the subject's
    # ConversationID from ResultParameters (not the envelope's, which is the query's own).
    occasion: str | None = None
    named_originator_conversation_id: str | None = None
    subject_conversation_id: str | None = None
    # The customer's MSISDN as the result shows it (masked or whole), from its party names.
    party: str | None = None

    def names_another_than_asked(self) -> bool:
        """The Occasion we sent names the id we asked about (an OriginatorConversationID or a receipt);
        an answer whose parameters name another OriginatorConversationID, and not the receipt asked
        about either, is about another transaction. An answer naming no OriginatorConversationID is
        about the Occasion (ours, echoed): its receipt is the payout's, not an id we asked about, and
        the store checks it against the receipt we hold."""
        if self.occasion is None or self.named_originator_conversation_id is None:
            return False
        return self.occasion not in (self.named_originator_conversation_id, self.receipt)

    @property
    def raw(self) -> bytes:
        return self.envelope.raw

    @property
    def completed(self) -> bool:
        return self.envelope.succeeded and (self.transaction_status or "").lower() == "completed"

    @property
    def final_failure(self) -> bool:
        return self.envelope.succeeded and (self.transaction_status or "").lower() in (
            "cancelled",
            "declined",
            "expired",
            "failed",
        )


def parse_status_result(data: dict[str, Any], raw: bytes) -> TransactionStatusResult:
    env = parse_result(data, raw, require_ocid=False)
    named = _text(env.param("OriginatorConversationID", "Originator Conversation ID"))
    occasion = _text(env.ref("Occasion", "Occassion"))
    return TransactionStatusResult(
        envelope=env,
        subject_originator_conversation_id=named or occasion,
        receipt=_text(env.param("ReceiptNo", "TransactionReceipt")),
        amount=amount(env.param("Amount", "TransactionAmount")),
        transaction_status=_text(env.param("TransactionStatus")),
        occasion=occasion,
        named_originator_conversation_id=named,
        subject_conversation_id=_text(env.param("ConversationID", "Conversation ID")),
        party=_customer_party(env.parameters),
    )


_PARTY_KEYS = ("ReceiverPartyPublicName", "CreditPartyName", "DebitPartyName")
_MSISDN_SHOWN = re.compile(r"^\+?[0-9][0-9* ]{7,}[0-9*]$")


def _customer_party(pairs: tuple[tuple[str, Scalar], ...]) -> str | None:
    """The customer's number from "<MSISDN> - <name>" party values (DebitPartyName is given twice,
    once for our shortcode): the first that shows a phone number (masked or whole), not a shortcode."""
    for key, value in pairs:
        if key not in _PARTY_KEYS or not isinstance(value, str):
            continue
        shown = value.split(" - ", 1)[0].strip()
        if _MSISDN_SHOWN.match(shown) and sum(c.isdigit() for c in shown) >= 6 and len(shown) >= 9:
            return shown
    return None


# --- C2B (paybill): validation and confirmation share one body ---------------------------

_TRANS_ID = re.compile(r"^[A-Z0-9]{10}$")
_C2B_REQUIRED = ("TransID", "TransAmount", "BusinessShortCode", "BillRefNumber")
_C2B_TEXT_MAX = 64


@dataclass(frozen=True)
class C2BNotification:
    """A paybill payment as M-Pesa describes it to the ValidationURL and then the ConfirmationURL.

    The MSISDN is kept only as shown: masked (`0722***000`, `2547 ***** 126`) since 2026, or whole.
    It is cross-checked on its visible digits and never used as a key. The payer's names are not
    kept (personal data PenPay does not need)."""

    trans_id: str
    amount: Decimal | None
    shortcode: str
    bill_ref: str
    msisdn: str | None
    transaction_type: str | None = None
    trans_time: str | None = None
    raw: bytes = field(default=b"", repr=False)

    @property
    def msisdn_masked(self) -> bool:
        return self.msisdn is not None and bool(_MASKED.search(self.msisdn))


def parse_c2b(data: dict[str, Any], raw: bytes) -> C2BNotification:
    """Daraja's C2B body (v1/v2): flat, every value a string or a number. Unknown keys are allowed
    (Daraja adds fields) but must hold scalars; the ones PenPay acts on must be there and sane."""
    for key, value in data.items():
        if isinstance(value, dict | list):
            raise MalformedCallback(f"{key} is not a scalar")
        if isinstance(value, str) and len(value) > 255:
            raise MalformedCallback(f"{key} is too long")
    for key in _C2B_REQUIRED:
        if key not in data:
            raise MalformedCallback(f"{key} missing")
    trans_id = _str(data, "TransID") or ""
    if not _TRANS_ID.match(trans_id):
        raise MalformedCallback("TransID has not the receipt format")
    shortcode = _str(data, "BusinessShortCode") or ""
    if not shortcode.isdigit():
        raise MalformedCallback("BusinessShortCode is not a number")
    bill_ref = data.get("BillRefNumber")
    if isinstance(bill_ref, bool) or not isinstance(bill_ref, str | int):
        raise MalformedCallback("BillRefNumber is not a string")
    money = amount(_scalar(data.get("TransAmount"), "TransAmount"))
    if money is None:
        raise MalformedCallback("TransAmount is not a number")
    shown = _text(_scalar(data.get("MSISDN"), "MSISDN"))
    return C2BNotification(
        trans_id=trans_id,
        amount=money,
        shortcode=shortcode,
        bill_ref=str(bill_ref).strip()[:_C2B_TEXT_MAX],
        msisdn=shown[:24] if shown else None,
        transaction_type=_text(_scalar(data.get("TransactionType"), "TransactionType")),
        trans_time=_text(_scalar(data.get("TransTime"), "TransTime")),
        raw=raw,
    )
