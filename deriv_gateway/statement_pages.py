"""Pages of the agent's statement for reconciliation (ListStatement): Deriv's `statement` lines as plain
records, amounts in integer minor units of the agent's currency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deriv_gateway.protocol.messages import from_wire_amount

MAX_PAGE = 500
DEFAULT_PAGE = 100


@dataclass(frozen=True, slots=True)
class StatementLine:
    transaction_id: int
    action_type: str
    amount_cents: int  # signed: positive credits the agent
    balance_after_cents: int
    from_loginid: str
    to_loginid: str
    longcode: str
    transaction_time: int


def page_size(limit: int) -> int:
    return DEFAULT_PAGE if limit <= 0 else min(limit, MAX_PAGE)


def statement_lines(message: dict[str, Any], digits: int) -> list[StatementLine]:
    """The lines of a `statement` answer that carry a transaction id (anything else is not a line)."""
    body = message.get("statement") or {}
    lines = []
    for row in body.get("transactions") or []:
        if not isinstance(row, dict) or not isinstance(row.get("transaction_id"), int):
            continue
        amount = row.get("amount")
        balance = row.get("balance_after")
        lines.append(
            StatementLine(
                transaction_id=int(row["transaction_id"]),
                action_type=str(row.get("action_type") or ""),
                amount_cents=from_wire_amount(amount, digits) if amount is not None else 0,
                balance_after_cents=from_wire_amount(balance, digits) if balance is not None else 0,
                from_loginid=_loginid(row.get("from")),
                to_loginid=_loginid(row.get("to")),
                longcode=str(row.get("longcode") or ""),
                transaction_time=int(row.get("transaction_time") or 0),
            )
        )
    return lines


def _loginid(party: Any) -> str:
    return str(party.get("loginid") or "") if isinstance(party, dict) else ""
