"""Base of every domain error.

`reason` is a stable UPPER_SNAKE code (it becomes gRPC ErrorInfo.reason, so renaming one
is a breaking change); `field` names the bad input, when there is one, for BadRequest.
"""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    reason: ClassVar[str] = "DOMAIN_ERROR"
    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if field is not None:
            self.field = field


class InvalidIdentifier(DomainError):
    reason = "INVALID_IDENTIFIER"


class NaiveDatetime(DomainError):
    """A timestamp without a timezone: ambiguous, so refused (PEC 3.4.2: UTC)."""

    reason = "NAIVE_DATETIME"


class ConcurrentModification(DomainError):
    """Raised by repositories when an optimistic version check fails."""

    reason = "CONCURRENT_MODIFICATION"


class InvalidValue(DomainError):
    """A malformed plain input (text too long, empty name, ...)."""

    reason = "INVALID_VALUE"
