"""Results of the Daraja client, as plain dataclasses (local to the adapter on purpose)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class StkPushAccepted:
    """ "Accepted for processing", never "paid". Persist both ids before acting on this."""

    merchant_request_id: str
    checkout_request_id: str
    response_code: str
    response_description: str
    customer_message: str | None


class StkQueryStatus(StrEnum):
    COMPLETED = "COMPLETED"  # ResultCode "0": paid
    FAILED = "FAILED"  # any other ResultCode: this checkout is over, nothing was paid
    PENDING = "PENDING"  # 500.001.1001 "The transaction is being processed"
    UNKNOWN = "UNKNOWN"  # 500.001.1001 "The transaction does not exist"


@dataclass(frozen=True)
class StkQueryResult:
    status: StkQueryStatus
    checkout_request_id: str
    merchant_request_id: str | None = None
    result_code: str | None = None
    result_desc: str | None = None


@dataclass(frozen=True)
class RequestAccepted:
    """Sync answer of B2C, Transaction Status and Account Balance; the outcome arrives at ResultURL."""

    originator_conversation_id: str
    conversation_id: str
    response_code: str
    response_description: str


@dataclass(frozen=True)
class C2BUrlsRegistered:
    """Register URL's answer: Daraja holds our ValidationURL and ConfirmationURL for the shortcode."""

    shortcode: str
    response_type: str
    response_description: str
