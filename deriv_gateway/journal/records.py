"""A journal row (Operation), its statuses, the fence's reserved row, and the refusals a writer gets."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SENDING = "SENDING"
DONE = "DONE"
FAILED = "FAILED"
NOT_SENT = "NOT_SENT"


# The fence row's id: never an operation id (those match ^[0-9A-Za-z-]{1,64}$), never listed as one.
FENCE_ID = "~fence"
FENCE = "FENCE"


class StaleFencingToken(Exception):
    """The row belongs to a newer leader (or moved on): this writer may not record."""

    def __init__(self, message: str, *, current: int | None = None) -> None:
        super().__init__(message)
        # the journal's fence when the refusal came from it (a newer leader's token)
        self.current = current


@dataclass(frozen=True, slots=True)
class Operation:
    operation_id: str
    kind: str
    client_loginid: str
    amount_cents: int
    currency: str
    description: str
    status: str
    attempts: int
    fencing_token: int | None
    deriv_transaction_id: int | None
    error_code: str | None
    error_message: str | None
    result: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime

    def same_request(self, kind: str, client_loginid: str, amount_cents: int, currency: str) -> bool:
        return (self.kind, self.client_loginid.upper(), self.amount_cents, self.currency) == (
            kind,
            client_loginid.upper(),
            amount_cents,
            currency,
        )


def row_of(row: Any) -> Operation:
    m = row._mapping
    return Operation(
        operation_id=m["operation_id"],
        kind=m["kind"],
        client_loginid=m["client_loginid"],
        amount_cents=m["amount_cents"],
        currency=m["amount_currency"],
        description=m["description"],
        status=m["status"],
        attempts=m["attempts"],
        fencing_token=m["fencing_token"],
        deriv_transaction_id=m["deriv_transaction_id"],
        error_code=m["error_code"],
        error_message=m["error_message"],
        result=json.loads(m["result"]) if m["result"] else None,
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


# json.dumps with separators builds an encoder per call; one, built once, writes the same text
compact_json = json.JSONEncoder(separators=(",", ":")).encode


class FenceMissing(RuntimeError):
    """The fence row was deleted behind the journal's back: created again on the next write."""


class JournalClosed(RuntimeError):
    """The journal closed (the gateway stopping) while a write waited for its commit: the caller
    learns nothing of it, as after a crash (a claim may still be committed: a SENDING row)."""


def claimed_row(values: dict[str, Any]) -> Operation:
    return Operation(
        operation_id=values["operation_id"],
        kind=values["kind"],
        client_loginid=values["client_loginid"],
        amount_cents=values["amount_cents"],
        currency=values["amount_currency"],
        description=values["description"],
        status=values["status"],
        attempts=values["attempts"],
        fencing_token=values["fencing_token"],
        deriv_transaction_id=None,
        error_code=None,
        error_message=None,
        result=None,
        created_at=values["created_at"],
        updated_at=values["updated_at"],
    )
