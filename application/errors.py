"""Errors the application layer raises or that adapters report to it."""

from __future__ import annotations

from domain.shared.errors import DomainError


class DuplicateIdempotencyKey(DomainError):
    """Another request with the same idempotency key stored its result first."""

    reason = "IDEMPOTENCY_KEY_ALREADY_USED"
