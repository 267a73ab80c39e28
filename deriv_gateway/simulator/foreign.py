"""Seeded faults where the server answers about another operation than the one asked about.

A third-party or faulty server may answer a request with its own ids; PenPay must use an answer only
when it is provably about its own request (issue 21). Two kinds (see faults.py):

- `other_operation`: the answer to a money call names another operation (its echo_req carries
  another reference, its transaction id is another one), after executing ours or, with `execute`
  false, without; the answer to a `statement` is the page of another query (a later offset).
- `other_line`: a `statement` answer to our own query whose lines are about other operations: each
  keeps its reference but names another client and amount.
- `reused_transaction_id`: a money call executed and answered about it, except for the transaction
  id: the one of the transfer before it in the books (another operation's).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from .engine import Session, envelope

OTHER_CLIENT = "CR90000999"
MONEY_CALLS = ("paymentagent_transfer", "paymentagent_withdraw")


def other_operation(session: Session, call: str, request: dict[str, Any], execute: bool) -> dict[str, Any]:
    books = session.engine.books
    if call == "statement":
        # the page another query would get: for ours, typically "not there"
        shifted = dict(request)
        shifted["offset"] = int(request.get("offset", 0)) + int(request.get("limit", 100))
        reply = session.handle(shifted).reply
        assert reply is not None
        return reply
    other_reference = f"PenPay {books.ids.uuid()}"
    other_txn = books.next_transaction_id + 1_000_000
    if execute:
        reply = session.handle(request).reply
        assert reply is not None
    elif call == "paymentagent_transfer":
        body = {
            "paymentagent_transfer": 1,
            "client_to_full_name": "Somebody Else",
            "client_to_loginid": str(request.get("transfer_to", OTHER_CLIENT)).upper(),
            "transaction_id": other_txn,
        }
        reply = envelope(call, request, body)
    else:
        reply = envelope(call, request, {"paymentagent_withdraw": 1, "paymentagent_name": "Another Agent"})
    reply = copy.deepcopy(reply)
    reply["echo_req"] = {**reply.get("echo_req", request), "description": other_reference}
    if "error" not in reply:
        reply["transaction_id"] = other_txn
    return reply


def other_line(session: Session, request: dict[str, Any]) -> dict[str, Any]:
    reply = session.handle(request).reply
    assert reply is not None
    reply = copy.deepcopy(reply)
    for line in (reply.get("statement") or {}).get("transactions") or []:
        amount = line.get("amount")
        if amount is not None:
            step = Decimal("0.01") if Decimal(str(amount)) >= 0 else Decimal("-0.01")
            line["amount"] = float(Decimal(str(amount)) + step)
        for side in ("from", "to"):
            if isinstance(line.get(side), dict):
                line[side] = {"loginid": OTHER_CLIENT}
    return reply


def reused_transaction_id(session: Session, request: dict[str, Any]) -> dict[str, Any]:
    reply = session.handle(request).reply
    assert reply is not None
    transfers = session.engine.books.transfers
    if "error" in reply or len(transfers) < 2:
        return reply
    return {**reply, "transaction_id": transfers[-2].debit_transaction_id}
