"""The port between the callback endpoints and storage: `CallbackInbox`.

The endpoint layer authenticates, validates and parses; the inbox records the evidence and decides what it
means (one short database transaction), and hands the follow-up work to the outbox. It never credits:
a recorded success is confirmed by `CallbackConfirmer` (STK Query / Transaction Status) in a worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from mpesa_adapter.callback_parsing import (
    B2CQueueTimeout,
    B2CResult,
    ResultEnvelope,
    StkCallback,
    TransactionStatusResult,
)
from mpesa_adapter.routes import CallbackKind


class Outcome(StrEnum):
    SUCCESS_RECORDED = "SUCCESS_RECORDED"  # first delivery of a success: awaits confirmation, then credit
    FAILURE_RECORDED = "FAILURE_RECORDED"  # first delivery of a failure: the payment is over
    TIMEOUT_RECORDED = "TIMEOUT_RECORDED"  # B2C queue timeout: outcome unknown, resolve by Transaction Status
    CONFIRMED = "CONFIRMED"  # Transaction Status proved the B2C completed (exactly one payout)
    STATUS_RECORDED = "STATUS_RECORDED"  # a status result that settles nothing (not found, in progress)
    DUPLICATE = "DUPLICATE"  # the same evidence again: nothing changed
    UNKNOWN = "UNKNOWN"  # no stored request with this id: recorded for review
    MISMATCH = "MISMATCH"  # values disagree with the stored request: recorded for review
    CONFLICT = "CONFLICT"  # a second, different result for a settled request: recorded for review
    REJECTED = "REJECTED"  # failed authentication / allow-list / parsing: recorded for review


class ReviewReason(StrEnum):
    UNKNOWN_ID = "UNKNOWN_ID"
    MERCHANT_ID_MISMATCH = "MERCHANT_ID_MISMATCH"
    CONVERSATION_ID_MISMATCH = "CONVERSATION_ID_MISMATCH"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    PHONE_MISMATCH = "PHONE_MISMATCH"
    RECEIPT_MISSING = "RECEIPT_MISSING"
    RECEIPT_INVALID = "RECEIPT_INVALID"
    RECEIPT_REUSED = "RECEIPT_REUSED"
    CONFLICTING_RESULT = "CONFLICTING_RESULT"
    CONFIRMATION_MISMATCH = "CONFIRMATION_MISMATCH"
    FOREIGN_ANSWER = "FOREIGN_ANSWER"  # an answer to our request that is about another id
    STATUS_FAILED = "STATUS_FAILED"  # Transaction Status failed for one of ours (e.g. no such receipt)
    BAD_PATH_SECRET = "BAD_PATH_SECRET"
    IP_NOT_ALLOWED = "IP_NOT_ALLOWED"
    MALFORMED = "MALFORMED"


@dataclass(frozen=True)
class Delivery:
    """How a callback arrived: the client address (after trusted-proxy X-Forwarded-For) and when
    (the callback endpoints stamp it by their injected clock)."""

    remote_addr: str | None
    received_at: datetime


@dataclass(frozen=True)
class Rejection:
    kind: CallbackKind
    reason: ReviewReason
    detail: str
    raw: bytes
    delivery: Delivery


class CallbackInbox(Protocol):
    async def record_stk_callback(self, cb: StkCallback, delivery: Delivery) -> Outcome: ...

    async def record_b2c_result(self, cb: B2CResult, delivery: Delivery) -> Outcome: ...

    async def record_b2c_timeout(self, cb: B2CQueueTimeout, delivery: Delivery) -> Outcome: ...

    async def record_status_result(self, cb: TransactionStatusResult, delivery: Delivery) -> Outcome: ...

    async def record_balance_result(self, env: ResultEnvelope, delivery: Delivery) -> Outcome: ...

    async def record_rejected(self, rejection: Rejection) -> Outcome: ...
