"""The Deriv error envelope: `{"error": {"code", "message", "details"?}}`."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Raised by handlers; the engine turns it into an error reply for the call."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}

    def as_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return error


def permission_denied() -> ApiError:
    return ApiError("PermissionDenied", "Permission denied.")
