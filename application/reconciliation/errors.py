"""Refusals of reconciliation's read API (their `reason` becomes the gRPC ErrorInfo reason)."""

from __future__ import annotations

from domain.shared.errors import DomainError


class RunNotFound(DomainError):
    reason = "RECONCILIATION_RUN_NOT_FOUND"
