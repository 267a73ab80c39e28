"""Request builders and reply parsers for the calls the gateway makes (pure functions).

Money is integer minor units inside PenPay; on the wire it is a JSON number with at most the
currency's fractional digits (Deriv refuses more). Parsing is lenient (number or numeric string),
because streamed balances are server-formatted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

DESCRIPTION_PATTERN = re.compile(r"^[0-9A-Za-z .,'-]{0,250}$")
LOGINID_PATTERN = re.compile(r"^[A-Za-z]+[0-9]+$")
OPERATION_ID_PATTERN = re.compile(r"^[0-9A-Za-z-]{1,64}$")
DEFAULT_DIGITS = 2


class AmountError(ValueError):
    pass


def to_wire_amount(cents: int, digits: int = DEFAULT_DIGITS) -> float | int:
    """Minor units as the JSON number Deriv expects (exact for any realistic amount)."""
    if cents <= 0:
        raise AmountError("amount must be positive")
    value = Decimal(cents).scaleb(-digits)
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def from_wire_amount(value: Any, digits: int = DEFAULT_DIGITS) -> int:
    """A wire amount (number or numeric string) in minor units, rounded to the currency's digits."""
    if isinstance(value, bool) or value is None:
        raise AmountError(f"not an amount: {value!r}")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise AmountError(f"not an amount: {value!r}") from None
    if not number.is_finite():
        raise AmountError(f"not an amount: {value!r}")
    return int(number.scaleb(digits).to_integral_value())


def reference(operation_id: str, prefix: str = "PenPay") -> str:
    """The description written to Deriv: how a statement line is matched back to a PenPay operation."""
    text = f"{prefix} {operation_id}"
    # fullmatch: with match, "$" also accepts a final newline
    if not OPERATION_ID_PATTERN.fullmatch(operation_id) or not DESCRIPTION_PATTERN.fullmatch(text):
        raise ValueError("operation id must match ^[0-9A-Za-z-]{1,64}$")
    return text


def transfer_fields(loginid: str, cents: int, currency: str, description: str, digits: int) -> dict[str, Any]:
    return {
        "amount": to_wire_amount(cents, digits),
        "currency": currency,
        "transfer_to": loginid,
        "description": description,
    }


def withdraw_fields(
    agent_loginid: str, cents: int, currency: str, code: str, description: str, digits: int
) -> dict[str, Any]:
    return {
        "amount": to_wire_amount(cents, digits),
        "currency": currency,
        "paymentagent_loginid": agent_loginid,
        "verification_code": code,
        "description": description,
    }


@dataclass(frozen=True, slots=True)
class StatementMatch:
    transaction_id: int
    amount_cents: int
    longcode: str
    transaction_time: int | None
    from_loginid: str | None = None
    to_loginid: str | None = None


def find_in_statement(
    statement: dict[str, Any], needle: str, digits: int = DEFAULT_DIGITS
) -> StatementMatch | None:
    """The statement line whose longcode contains the reference (whole-token match), if any."""
    body = statement.get("statement") or {}
    pattern = re.compile(r"(?<![0-9A-Za-z-])" + re.escape(needle) + r"(?![0-9A-Za-z-])")
    for line in body.get("transactions") or []:
        longcode = str(line.get("longcode") or "")
        if pattern.search(longcode) and isinstance(line.get("transaction_id"), int):
            amount = line.get("amount")
            return StatementMatch(
                transaction_id=int(line["transaction_id"]),
                amount_cents=abs(from_wire_amount(amount, digits)) if amount is not None else 0,
                longcode=longcode,
                transaction_time=line.get("transaction_time"),
                from_loginid=_loginid_of(line.get("from")),
                to_loginid=_loginid_of(line.get("to")),
            )
    return None


def _loginid_of(party: Any) -> str | None:
    loginid = party.get("loginid") if isinstance(party, dict) else None
    return str(loginid) if loginid else None


def statement_count(statement: dict[str, Any]) -> int:
    body = statement.get("statement") or {}
    return len(body.get("transactions") or [])


def currency_digits(website_status: dict[str, Any], currency: str) -> int:
    config = (website_status.get("website_status") or website_status).get("currencies_config") or {}
    entry = config.get(currency) or {}
    digits = entry.get("fractional_digits")
    return int(digits) if isinstance(digits, int) else DEFAULT_DIGITS
