"""Daraja's Pull Transactions API: the C2B payments M-Pesa received under a shortcode, for reconciliation.

Two calls (Safaricom's "Pull Transactions" product):
- register, once per shortcode: `POST /pulltransactions/v1/register`
  `{"ShortCode", "RequestType": "Pull", "NominatedNumber", "CallBackURL"}` answered with
  `{"ResponseRefID", "ResponseStatus": "1000", "ShortCode", "ResponseDescription"}`;
- query: `POST /pulltransactions/v1/query` `{"ShortCode", "StartDate", "EndDate", "OffSetValue"}` (dates
  `YYYY-MM-DD HH:mm:ss`, Nairobi time; only the last 48 hours are kept) answered with
  `{"ResponseRefID", "ResponseCode": "1000", "ResponseMessage": "Success", "Response": [[{...}, ...]]}`.
  Paging is by row offset: the next query starts at the number of rows read so far.

A failed pull is answered with HTTP 200 and `ResponseCode` "1001" (or another code than "1000"): that is a
failure (`PullFailed`), never an empty list. An empty list is only a "1000" answer with no rows.
Customers' numbers may come masked (`0722***000`): they are kept as shown and never used as a key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from mpesa_adapter import errors

PULL_REGISTER = "/pulltransactions/v1/register"
PULL_QUERY = "/pulltransactions/v1/query"
SUCCESS = "1000"
# Daraja keeps pulled transactions for 48 hours: a window reaching further back is clipped.
PULL_WINDOW = timedelta(hours=48)
EAT = timezone(timedelta(hours=3), "EAT")


class PullFailed(errors.MpesaAdapterError):
    """A Pull Transactions answer that is not a success: HTTP 200 with ResponseCode 1001 included."""

    def __init__(self, response_code: str, message: str, ref_id: str | None) -> None:
        super().__init__(f"pull transactions failed: ResponseCode {response_code} {message!r} (ref {ref_id})")
        self.response_code = response_code
        self.message = message
        self.ref_id = ref_id


@dataclass(frozen=True)
class PulledTransaction:
    """One C2B payment as M-Pesa reports it (the receipt is `transactionId`)."""

    receipt: str
    amount_cents: int
    occurred_at: datetime
    msisdn_shown: str  # as M-Pesa shows it, possibly masked
    bill_reference: str
    transaction_type: str
    raw: dict[str, Any]


@dataclass(frozen=True)
class PullPage:
    ref_id: str | None
    transactions: tuple[PulledTransaction, ...]


def pull_date(moment: datetime) -> str:
    return moment.astimezone(EAT).strftime("%Y-%m-%d %H:%M:%S")


def register_body(shortcode: str, nominated_number: str, callback_url: str) -> dict[str, str]:
    return {
        "ShortCode": shortcode,
        "RequestType": "Pull",
        "NominatedNumber": nominated_number,
        "CallBackURL": callback_url,
    }


def query_body(shortcode: str, start: datetime, end: datetime, offset: int) -> dict[str, str]:
    if end < start:
        raise errors.InvalidRequest("EndDate before StartDate")
    return {
        "ShortCode": shortcode,
        "StartDate": pull_date(start),
        "EndDate": pull_date(end),
        "OffSetValue": str(offset),
    }


def parse_register(data: dict[str, Any]) -> str:
    status = str(data.get("ResponseStatus") or data.get("ResponseCode") or "").strip()
    if status != SUCCESS:
        raise PullFailed(status or "?", str(data.get("ResponseDescription") or ""), _ref(data))
    return _ref(data) or ""


def parse_query(data: dict[str, Any]) -> PullPage:
    code = str(data.get("ResponseCode") or "").strip()
    ref = _ref(data)
    if code != SUCCESS:
        raise PullFailed(code or "?", str(data.get("ResponseMessage") or ""), ref)
    rows: list[dict[str, Any]] = []
    for group in data.get("Response") or []:
        # `Response` is a list of lists of rows (the portal's sample); a flat list is tolerated.
        if isinstance(group, list):
            rows.extend(r for r in group if isinstance(r, dict))
        elif isinstance(group, dict):
            rows.append(group)
    return PullPage(ref, tuple(_transaction(row) for row in rows))


def _transaction(row: dict[str, Any]) -> PulledTransaction:
    receipt = str(row.get("transactionId") or "").strip()
    if not receipt:
        raise errors.UnexpectedAnswer("invalid_response", "pulled transaction without transactionId")
    try:
        amount = Decimal(str(row.get("amount")))
    except (InvalidOperation, ValueError):
        raise errors.UnexpectedAnswer("invalid_response", f"pulled {receipt}: bad amount") from None
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise errors.UnexpectedAnswer("invalid_response", f"pulled {receipt}: amount below a cent")
    return PulledTransaction(
        receipt=receipt,
        amount_cents=int(cents),
        occurred_at=_when(row.get("trxDate")),
        msisdn_shown=str(row.get("msisdn") or ""),
        bill_reference=str(row.get("billreference") or ""),
        transaction_type=str(row.get("transactiontype") or ""),
        raw=row,
    )


def _when(value: Any) -> datetime:
    text = str(value or "").strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise errors.UnexpectedAnswer("invalid_response", f"pulled trxDate {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=EAT)


def _ref(data: dict[str, Any]) -> str | None:
    value = data.get("ResponseRefID")
    return None if value is None else str(value)
