"""Request validation as Daraja does it (daraja-protocol.md sections 2.1, 2.6, 3.2, 4, 5, 7, 10.4).

Pure functions: each takes the decoded JSON body and returns a typed request or raises DarajaError.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from mpesa_adapter.simulator import errors
from mpesa_adapter.simulator.errors import bad_request

MSISDN_RE = re.compile(r"^254(7|1)\d{8}$")
SHORTCODE_RE = re.compile(r"^\d{5,7}$")
STK_TRANSACTION_TYPES = ("CustomerPayBillOnline", "CustomerBuyGoodsOnline")
B2C_COMMANDS = ("BusinessPayment", "SalaryPayment", "PromotionPayment")
IDENTIFIER_TYPES = ("1", "2", "4")
BANNED_URL_WORDS = ("m-pesa", "mpesa", "safaricom", "exe", "exec", "cmd", "sql", "query")
STK_MIN, STK_MAX = 1, 250_000
B2C_MIN, B2C_MAX = 10, 250_000


def _text(value: Any) -> str | None:
    """Daraja takes numbers either as JSON numbers or as numeric strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    return None


def whole_shillings(value: Any) -> int | None:
    """Integer or digit string; decimals (10.5, "10.50", 1.0) are rejected as Daraja does."""
    text = _text(value)
    if text is None or not text.isdigit():
        return None
    return int(text)


def msisdn(value: Any) -> str | None:
    text = _text(value)
    return text if text is not None and MSISDN_RE.match(text) else None


def shortcode(value: Any) -> str | None:
    text = _text(value)
    return text if text is not None and SHORTCODE_RE.match(text) else None


def valid_url(value: Any, ban_keywords: bool) -> bool:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    return not (ban_keywords and any(word in value.lower() for word in BANNED_URL_WORDS))


def _require_url(body: dict[str, Any], key: str, ban: bool) -> str:
    value = body.get(key)
    if not valid_url(value, ban):
        raise bad_request(key)
    return str(value)


def _require_str(body: dict[str, Any], key: str, min_len: int = 1, max_len: int = 100) -> str:
    value = _text(body.get(key))
    if value is None or not min_len <= len(value) <= max_len:
        raise bad_request(key)
    return value


def _optional_str(body: dict[str, Any], keys: tuple[str, ...], max_len: int) -> str:
    for key in keys:
        if key in body and body[key] is not None:
            value = _text(body[key])
            if value is None or len(value) > max_len:
                raise bad_request(key)
            return value
    return ""


def _timestamp(value: Any) -> str:
    text = _text(value)
    if text is None or not re.fullmatch(r"\d{14}", text):
        raise bad_request("Timestamp")
    try:
        datetime.strptime(text, "%Y%m%d%H%M%S")
    except ValueError:
        raise bad_request("Timestamp") from None
    return text


def check_merchant(short: str, password: Any, timestamp: str, passkeys: dict[str, str]) -> None:
    """Password = base64(shortcode + passkey + timestamp) with the request's own Timestamp."""
    passkey = passkeys.get(short)
    if passkey is None:
        raise errors.err(errors.MERCHANT_DOES_NOT_EXIST)
    try:
        decoded = base64.b64decode(str(password), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = None
    if decoded != f"{short}{passkey}{timestamp}":
        raise errors.err(errors.WRONG_CREDENTIALS)


def as_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.invalid_payload()
    return body


@dataclass(frozen=True)
class StkPush:
    shortcode: str
    transaction_type: str
    amount: int
    party_a: str
    party_b: str
    phone: str
    callback_url: str
    account_reference: str
    transaction_desc: str


def stk_push(body: Any, passkeys: dict[str, str], limits_sync: bool, ban_url_keywords: bool) -> StkPush:
    body = as_object(body)
    short = shortcode(body.get("BusinessShortCode"))
    if short is None:
        raise bad_request("BusinessShortCode")
    password = body.get("Password")
    if not isinstance(password, str) or not password:
        raise bad_request("Password")
    timestamp = _timestamp(body.get("Timestamp"))
    transaction_type = body.get("TransactionType")
    if transaction_type not in STK_TRANSACTION_TYPES:
        raise bad_request("TransactionType")
    amount = whole_shillings(body.get("Amount"))
    if amount is None or (limits_sync and not STK_MIN <= amount <= STK_MAX):
        raise bad_request("Amount")
    party_a = msisdn(body.get("PartyA"))
    if party_a is None:
        raise bad_request("PartyA")
    party_b = shortcode(body.get("PartyB"))
    if party_b is None:
        raise bad_request("PartyB")
    phone = msisdn(body.get("PhoneNumber"))
    if phone is None:
        raise bad_request("PhoneNumber")
    callback_url = _require_url(body, "CallBackURL", ban_url_keywords)
    account_reference = _require_str(body, "AccountReference", 1, 12)
    transaction_desc = _optional_str(body, ("TransactionDesc",), 13)
    check_merchant(short, password, timestamp, passkeys)
    return StkPush(
        short,
        str(transaction_type),
        amount,
        party_a,
        party_b,
        phone,
        callback_url,
        account_reference,
        transaction_desc,
    )


def stk_query(body: Any, passkeys: dict[str, str]) -> str:
    body = as_object(body)
    short = shortcode(body.get("BusinessShortCode"))
    if short is None:
        raise bad_request("BusinessShortCode")
    password = body.get("Password")
    if not isinstance(password, str) or not password:
        raise bad_request("Password")
    timestamp = _timestamp(body.get("Timestamp"))
    checkout = body.get("CheckoutRequestID")
    if not isinstance(checkout, str) or not checkout.strip():
        raise bad_request("CheckoutRequestID")
    check_merchant(short, password, timestamp, passkeys)
    return checkout.strip()


@dataclass(frozen=True)
class B2CPayment:
    originator_conversation_id: str
    initiator: str
    credential: str
    command_id: str
    amount: int
    party_a: str
    party_b: str  # digits; not necessarily a valid MSISDN (that is an async SFC_IC0003)
    remarks: str
    queue_timeout_url: str
    result_url: str
    occasion: str


def b2c_payment(body: Any, limits_sync: bool, ban_url_keywords: bool) -> B2CPayment:
    body = as_object(body)
    ocid = _require_str(body, "OriginatorConversationID", 1, 100)
    initiator = _require_str(body, "InitiatorName", 1, 100)
    credential = _require_str(body, "SecurityCredential", 1, 4096)
    command = body.get("CommandID")
    if command not in B2C_COMMANDS:
        raise bad_request("CommandID")
    amount = whole_shillings(body.get("Amount"))
    if amount is None or (limits_sync and not B2C_MIN <= amount <= B2C_MAX):
        raise bad_request("Amount")
    party_a = shortcode(body.get("PartyA"))
    if party_a is None:
        raise bad_request("PartyA")
    party_b = _text(body.get("PartyB"))
    if party_b is None or not party_b.isdigit() or not 9 <= len(party_b) <= 15:
        raise bad_request("PartyB")
    remarks = _require_str(body, "Remarks", 2, 100)
    queue_timeout_url = _require_url(body, "QueueTimeOutURL", ban_url_keywords)
    result_url = _require_url(body, "ResultURL", ban_url_keywords)
    occasion = _optional_str(body, ("Occassion", "Occasion"), 100)
    return B2CPayment(
        ocid,
        initiator,
        credential,
        str(command),
        amount,
        party_a,
        party_b,
        remarks,
        queue_timeout_url,
        result_url,
        occasion,
    )


@dataclass(frozen=True)
class ReportRequest:
    """Transaction Status or Account Balance."""

    initiator: str
    credential: str
    party_a: str
    identifier_type: str
    remarks: str
    queue_timeout_url: str
    result_url: str
    occasion: str = ""
    transaction_id: str = ""
    original_conversation_id: str = ""


def _report_common(body: dict[str, Any], command: str, ban: bool) -> dict[str, str]:
    initiator = _require_str(body, "Initiator", 1, 100)
    credential = _require_str(body, "SecurityCredential", 1, 4096)
    if body.get("CommandID") != command:
        raise bad_request("CommandID")
    party_a = _text(body.get("PartyA"))
    if party_a is None or not party_a.isdigit() or not 5 <= len(party_a) <= 12:
        raise bad_request("PartyA")
    identifier_type = _text(body.get("IdentifierType"))
    if identifier_type not in IDENTIFIER_TYPES:
        raise bad_request("IdentifierType")
    remarks = _require_str(body, "Remarks", 1, 100)
    return {
        "initiator": initiator,
        "credential": credential,
        "party_a": party_a,
        "identifier_type": identifier_type,
        "remarks": remarks,
        "queue_timeout_url": _require_url(body, "QueueTimeOutURL", ban),
        "result_url": _require_url(body, "ResultURL", ban),
    }


def transaction_status(body: Any, ban_url_keywords: bool) -> ReportRequest:
    body = as_object(body)
    common = _report_common(body, "TransactionStatusQuery", ban_url_keywords)
    transaction_id = _optional_str(body, ("TransactionID",), 20)
    # The portal names it OriginalConversationID; OriginatorConversationID is tolerated.
    original = _optional_str(body, ("OriginalConversationID", "OriginatorConversationID"), 100)
    if not transaction_id and not original:
        raise bad_request("TransactionID")
    occasion = _optional_str(body, ("Occasion", "Occassion"), 100)
    return ReportRequest(
        **common, occasion=occasion, transaction_id=transaction_id, original_conversation_id=original
    )


def account_balance(body: Any, ban_url_keywords: bool) -> ReportRequest:
    body = as_object(body)
    return ReportRequest(**_report_common(body, "AccountBalance", ban_url_keywords))


REVERSAL_RECEIVER_TYPES = ("11", "4")  # "11" is what public SDKs send for a shortcode; "4" tolerated


@dataclass(frozen=True)
class ReversalRequest:
    initiator: str
    credential: str
    transaction_id: str
    amount: int
    receiver_party: str
    remarks: str
    queue_timeout_url: str
    result_url: str
    occasion: str
    originator_conversation_id: str  # "" when the caller sent none (the gateway then makes one)


def reversal(body: Any, ban_url_keywords: bool) -> ReversalRequest:
    """Reversal (inferred from the public Reversal page: Initiator, SecurityCredential, CommandID
    TransactionReversal, TransactionID, Amount, ReceiverParty, RecieverIdentifierType, ResultURL,
    QueueTimeOutURL, Remarks, Occasion). The misspelt `RecieverIdentifierType` is the wire's; the
    correct spelling is tolerated too."""
    body = as_object(body)
    initiator = _require_str(body, "Initiator", 1, 100)
    credential = _require_str(body, "SecurityCredential", 1, 4096)
    if body.get("CommandID") != "TransactionReversal":
        raise bad_request("CommandID")
    transaction_id = _text(body.get("TransactionID"))
    if transaction_id is None or not transaction_id.isalnum() or not 8 <= len(transaction_id) <= 20:
        raise bad_request("TransactionID")
    amount = whole_shillings(body.get("Amount"))
    if amount is None or amount < 1:
        raise bad_request("Amount")
    receiver = shortcode(body.get("ReceiverParty"))
    if receiver is None:
        raise bad_request("ReceiverParty")
    kind = _text(body.get("RecieverIdentifierType", body.get("ReceiverIdentifierType")))
    if kind not in REVERSAL_RECEIVER_TYPES:
        raise bad_request("RecieverIdentifierType")
    remarks = _require_str(body, "Remarks", 1, 100)
    queue_timeout_url = _require_url(body, "QueueTimeOutURL", ban_url_keywords)
    result_url = _require_url(body, "ResultURL", ban_url_keywords)
    occasion = _optional_str(body, ("Occasion", "Occassion"), 100)
    ocid = _optional_str(body, ("OriginatorConversationID",), 100)
    return ReversalRequest(
        initiator,
        credential,
        transaction_id,
        amount,
        receiver,
        remarks,
        queue_timeout_url,
        result_url,
        occasion,
        ocid,
    )
