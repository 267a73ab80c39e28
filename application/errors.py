"""Errors the application layer raises or that adapters report to it."""

from __future__ import annotations

from domain.shared.errors import DomainError


class DuplicateIdempotencyKey(DomainError):
    """Another request with the same idempotency key stored its result first."""

    reason = "IDEMPOTENCY_KEY_ALREADY_USED"


def failure_fields(error: BaseException) -> dict[str, object]:
    """What a warning says about a failure: its type and, when the database driver gave one, the
    server's error number (1213 a deadlock, 1205 a lock wait run out), never the message, which
    can carry a statement's parameters. The type alone hid which lock conflicts the saga met."""
    fields: dict[str, object] = {"error": type(error).__name__}
    module = type(error).__module__
    if module != "builtins":  # a TimeoutError of SQLAlchemy's pool is not one of asyncio's
        fields["error_from"] = module
    args = getattr(getattr(error, "orig", None), "args", None)
    if isinstance(args, tuple) and args and isinstance(args[0], int):
        fields["db_errno"] = args[0]
    return fields
