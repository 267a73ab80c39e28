"""Refusals of the review queue (their `reason` becomes the gRPC ErrorInfo reason)."""

from __future__ import annotations

from domain.shared.errors import DomainError


class ReviewActionNotFound(DomainError):
    reason = "REVIEW_ACTION_NOT_FOUND"


class ActionNotPossible(DomainError):
    """The transaction as it stands does not allow the action."""

    reason = "REVIEW_ACTION_NOT_POSSIBLE"


class ProposalAlreadyOpen(DomainError):
    reason = "REVIEW_ACTION_ALREADY_OPEN"


class ProposalNotOpen(DomainError):
    reason = "REVIEW_ACTION_NOT_OPEN"


class FourEyesRequired(DomainError):
    """The approver is the proposer: a money-moving action takes two people."""

    reason = "FOUR_EYES_REQUIRED"


class EvidenceDenied(DomainError):
    """The provider's own records do not confirm the evidence the proposer gave."""

    reason = "EVIDENCE_DENIED"


class EvidenceUnavailable(DomainError):
    """The provider could not be asked now; nothing changed, approve again later."""

    reason = "EVIDENCE_UNAVAILABLE"
