"""What the protos cannot say and the servers enforce, for the OpenAPI document: value ranges,
the values a string field takes, and the fields a request must carry.

Keyed by full proto name ("pkg.Message.field", "pkg.Message"). The numbers are the servicers' own
limits and the values the domain's enums (tests/http_bridge/test_openapi_truth.py holds them
together); the bridge stays generic and takes these as BridgeConfig.field_facts / required_fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from application.identity.kyc_review import AttestationStatus
from domain.payments.attachments import EvidenceStatus
from domain.payments.status import TransactionStatus, TransactionType
from domain.wallet.account_kind import AccountKind

_STATUSES = [s.value for s in TransactionStatus]
_TYPES = [t.value for t in TransactionType]
_OPS = "penpay.ops.v1"

FIELD_FACTS: Mapping[str, Mapping[str, Any]] = {
    # 0 means the default page; the servicers refuse what is outside.
    f"{_OPS}.ListReviewQueueRequest.page_size": {"minimum": 0, "maximum": 100, "default": 20},
    "penpay.dev.v1.ListSentMessagesRequest.page_size": {"minimum": 0, "maximum": 100, "default": 20},
    "penpay.wallet.v1.ListLedgerEntriesRequest.page_size": {"minimum": 0, "maximum": 200, "default": 50},
    f"{_OPS}.ListReviewQueueRequest.statuses": {
        "enum": [TransactionStatus.NEEDS_REVIEW.value, TransactionStatus.OUTCOME_UNKNOWN.value]
    },
    f"{_OPS}.ListReviewQueueRequest.type": {"enum": ["", *_TYPES]},
    f"{_OPS}.ReviewItem.type": {"enum": _TYPES},
    f"{_OPS}.ReviewItem.status": {"enum": _STATUSES},
    f"{_OPS}.TransactionStatusCount.type": {"enum": _TYPES},
    f"{_OPS}.TransactionStatusCount.status": {"enum": _STATUSES},
    f"{_OPS}.EvidenceRecord.kind": {
        "enum": ["MPESA_REQUEST", "MPESA_DISBURSEMENT", "DERIV_TRANSFER", "DERIV_WITHDRAWAL"]
    },
    f"{_OPS}.EvidenceRecord.status": {"enum": [s.value for s in EvidenceStatus]},
    f"{_OPS}.AccountKindTotal.kind": {"enum": [k.value for k in AccountKind]},
    f"{_OPS}.ReviewItem.possible_actions": {"enum": ["RESOLVE_COMPLETED", "REFUND", "FAIL", "RETRY"]},
    f"{_OPS}.ProposeReviewActionRequest.reason": {"minLength": 1, "maxLength": 255},
    f"{_OPS}.RejectReviewActionRequest.reason": {"minLength": 1, "maxLength": 255},
    f"{_OPS}.RevealCustomerPhoneRequest.reason": {"minLength": 1, "maxLength": 255},
    "penpay.payments.v1.Transaction.status": {"enum": [s.lower() for s in _STATUSES]},
    f"{_OPS}.SearchTransactionsRequest.page_size": {"minimum": 0, "maximum": 50, "default": 20},
    f"{_OPS}.SearchTransactionsRequest.query": {"minLength": 1, "maxLength": 64},
    f"{_OPS}.TransactionMatch.type": {"enum": _TYPES},
    f"{_OPS}.TransactionMatch.status": {"enum": _STATUSES},
    f"{_OPS}.TransactionMatch.matched_on": {
        "enum": ["TRANSACTION_ID", "MPESA_RECEIPT", "DERIV_TRANSACTION_ID", "PHONE"]
    },
    f"{_OPS}.LedgerLine.side": {"enum": ["DEBIT", "CREDIT"]},
    f"{_OPS}.ListKycAttestationsRequest.page_size": {"minimum": 0, "maximum": 200, "default": 50},
    f"{_OPS}.ProposeKycAttestationRequest.evidence": {"minLength": 1, "maxLength": 128},
    f"{_OPS}.RejectKycAttestationRequest.reason": {"minLength": 1, "maxLength": 255},
    f"{_OPS}.RevealKycAttestationRequest.reason": {"minLength": 1, "maxLength": 255},
    f"{_OPS}.KycAttestation.status": {"enum": [s.value for s in AttestationStatus]},
    f"{_OPS}.LedgerLine.account_kind": {"enum": [k.value for k in AccountKind]},
}

# Request messages: the fields the server refuses to go without (proto3 cannot say it).
REQUIRED_FIELDS: Mapping[str, tuple[str, ...]] = {
    f"{_OPS}.ProposeReviewActionRequest": ("transaction_id", "kind", "reason"),
    f"{_OPS}.ApproveReviewActionRequest": ("action_id",),
    f"{_OPS}.RejectReviewActionRequest": ("action_id", "reason"),
    f"{_OPS}.RevealCustomerPhoneRequest": ("transaction_id", "reason"),
    f"{_OPS}.ProposeKycAttestationRequest": ("user_id", "identity", "evidence"),
    f"{_OPS}.ApproveKycAttestationRequest": ("attestation_id",),
    f"{_OPS}.RejectKycAttestationRequest": ("attestation_id", "reason"),
    f"{_OPS}.RevealKycAttestationRequest": ("attestation_id", "reason"),
    "penpay.auth.v1.RegisterRequest": ("email", "phone_number", "password"),
    "penpay.auth.v1.LoginRequest": ("login", "password"),
    "penpay.auth.v1.VerifyPhoneRequest": ("phone_number", "code"),
    "penpay.auth.v1.VerifyEmailRequest": ("email", "code"),
    "penpay.auth.v1.ResetPasswordRequest": ("login", "code", "new_password"),
    "penpay.auth.v1.ChangePasswordRequest": ("current_password", "new_password"),
}
