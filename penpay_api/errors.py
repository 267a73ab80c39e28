"""Errors as gRPC statuses with google.rpc details, one mapping for every PenPay service.

A failed call carries a google.rpc.Status serialized in the `grpc-status-details-bin` trailer
(what grpcio-status' rpc_status.to_status produces; grpcio-status is not a dependency, so the
Status is built here): always an ErrorInfo (stable `reason`, domain "penpay.io"), plus a
BadRequest field violation when the error names a request field, and RetryInfo when the client
should wait before retrying.

- DomainError (domain/shared/errors.py) and the application's errors: the code comes from the
  error's class (by its `reason`), the message is the error's own (written for users).
- RpcFailure: raised by interceptors and servicers that already know the status.
- Anything else: INTERNAL with the message "internal error" and nothing of the exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from domain.shared.errors import DomainError

ERROR_DOMAIN = "penpay.io"
DETAILS_KEY = "grpc-status-details-bin"
HTTP_CODE_KEY = "x-http-code"
RETRY_AFTER_KEY = "retry-after"

Metadata = tuple[tuple[str, str | bytes], ...]

# Reasons whose code is not INVALID_ARGUMENT / FAILED_PRECONDITION by the default rule below.
_CODE_BY_REASON: Mapping[str, grpc.StatusCode] = {
    # identity
    "ALREADY_REGISTERED": grpc.StatusCode.ALREADY_EXISTS,
    "USER_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "DEVICE_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "INVALID_CREDENTIALS": grpc.StatusCode.UNAUTHENTICATED,
    "INVALID_ACCESS_TOKEN": grpc.StatusCode.UNAUTHENTICATED,
    "INVALID_REFRESH_TOKEN": grpc.StatusCode.UNAUTHENTICATED,
    "SESSION_ENDED": grpc.StatusCode.UNAUTHENTICATED,
    "REFRESH_TOKEN_REUSED": grpc.StatusCode.UNAUTHENTICATED,
    "VERIFICATION_CODE_INVALID": grpc.StatusCode.INVALID_ARGUMENT,
    "VERIFICATION_ATTEMPTS_EXHAUSTED": grpc.StatusCode.FAILED_PRECONDITION,
    "RATE_LIMITED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "MESSAGE_NOT_DELIVERED": grpc.StatusCode.UNAVAILABLE,
    "DEVICE_LIMIT_REACHED": grpc.StatusCode.FAILED_PRECONDITION,
    "DERIV_ACCOUNT_ALREADY_BOUND": grpc.StatusCode.FAILED_PRECONDITION,
    "VIRTUAL_ACCOUNT_REFUSED": grpc.StatusCode.FAILED_PRECONDITION,
    "DERIV_BINDING_REFUSED": grpc.StatusCode.FAILED_PRECONDITION,
    "DERIV_ACCOUNT_NOT_BOUND": grpc.StatusCode.FAILED_PRECONDITION,
    "DERIV_REBIND_REQUIRED": grpc.StatusCode.FAILED_PRECONDITION,
    "DERIV_UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "DERIV_OAUTH_BROWSER_MISMATCH": grpc.StatusCode.PERMISSION_DENIED,
    "COMPLIANCE_REFUSED": grpc.StatusCode.FAILED_PRECONDITION,
    # payments
    "TRANSACTION_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "WITHDRAWAL_NOT_AWAITING_CODE": grpc.StatusCode.FAILED_PRECONDITION,
    "VERIFICATION_CODE_REJECTED": grpc.StatusCode.INVALID_ARGUMENT,
    "PAYMENT_REFUSED": grpc.StatusCode.FAILED_PRECONDITION,
    "FLOAT_INSUFFICIENT": grpc.StatusCode.FAILED_PRECONDITION,
    "UPSTREAM_UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "DERIV_BUSY": grpc.StatusCode.UNAVAILABLE,
    # The amount itself must change (not the system's state), even where the quoted rate decides it.
    "DERIV_AMOUNT_OUT_OF_RANGE": grpc.StatusCode.INVALID_ARGUMENT,
    "RATE_EXPIRED": grpc.StatusCode.FAILED_PRECONDITION,
    "OVERDRAFT": grpc.StatusCode.FAILED_PRECONDITION,
    "ILLEGAL_TRANSITION": grpc.StatusCode.FAILED_PRECONDITION,
    # review queue
    "FOUR_EYES_REQUIRED": grpc.StatusCode.PERMISSION_DENIED,
    "EVIDENCE_DENIED": grpc.StatusCode.FAILED_PRECONDITION,
    "EVIDENCE_UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "REVIEW_ACTION_ALREADY_OPEN": grpc.StatusCode.FAILED_PRECONDITION,
    # concurrency: the client may retry
    "CONCURRENT_MODIFICATION": grpc.StatusCode.ABORTED,
    "IDEMPOTENCY_KEY_ALREADY_USED": grpc.StatusCode.ABORTED,
}

# Broken invariants inside PenPay, not something the caller did: INTERNAL, message hidden.
_INTERNAL_REASONS = frozenset(
    {"INVALID_EVIDENCE", "UNBALANCED_POSTING", "UNKNOWN_LEDGER_ACCOUNT", "NAIVE_DATETIME", "AMOUNT_MISMATCH"}
)

# Domain field names -> the request field that carries them.
FIELD_ALIASES: Mapping[str, str] = {"amount": "amount_cents", "phone": "phone_number"}

# Codes after which the same request may succeed later (the idempotency layer does not keep them).
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    }
)

_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def code_from_int(value: int) -> grpc.StatusCode:
    return _BY_VALUE.get(value, grpc.StatusCode.UNKNOWN)


@dataclass(frozen=True)
class Violation:
    field: str
    description: str


class RpcFailure(Exception):
    """A call's outcome as a status: code, message, the serialized google.rpc.Status and any
    extra trailing metadata (e.g. x-http-code). Raised inside the server; the error-mapping
    interceptor turns it into the call's status."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        status: bytes,
        extra_trailers: Metadata = (),
        *,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.extra_trailers = extra_trailers
        self.reason = reason

    @property
    def trailing_metadata(self) -> Metadata:
        return ((DETAILS_KEY, self.status), *self.extra_trailers)

    @classmethod
    def build(
        cls,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[Violation] = (),
        retry_after_seconds: int | None = None,
        extra_trailers: Metadata = (),
    ) -> RpcFailure:
        return cls(
            code,
            message,
            build_status(
                code,
                message,
                reason=reason,
                metadata=metadata,
                violations=violations,
                retry_after_seconds=retry_after_seconds,
            ),
            extra_trailers,
            reason=reason,
        )

    @classmethod
    def from_status_bytes(cls, status: bytes, extra_trailers: Metadata = ()) -> RpcFailure:
        """A stored failure (the idempotency layer's replay)."""
        parsed = parse_status(((DETAILS_KEY, status),))
        assert parsed is not None
        reason = parsed.error_info.reason if parsed.error_info else None
        return cls(code_from_int(parsed.code), parsed.message, status, extra_trailers, reason=reason)


def build_status(
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str,
    metadata: Mapping[str, str] | None = None,
    violations: Sequence[Violation] = (),
    retry_after_seconds: int | None = None,
) -> bytes:
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=dict(metadata or {}))
    )
    if violations:
        status.details.add().Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in violations
                ]
            )
        )
    if retry_after_seconds is not None:
        status.details.add().Pack(
            error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=int(retry_after_seconds)))
        )
    data: bytes = status.SerializeToString()
    return data


def invalid_argument(field_name: str, description: str, *, reason: str = "INVALID_ARGUMENT") -> RpcFailure:
    return RpcFailure.build(
        grpc.StatusCode.INVALID_ARGUMENT,
        description,
        reason=reason,
        metadata={"field": field_name},
        violations=[Violation(field_name, description)],
    )


def code_for_domain_error(error: DomainError) -> grpc.StatusCode:
    reason = error.reason
    if reason in _INTERNAL_REASONS:
        return grpc.StatusCode.INTERNAL
    code = _CODE_BY_REASON.get(reason)
    if code is not None:
        return code
    if reason.endswith("_NOT_FOUND"):
        return grpc.StatusCode.NOT_FOUND
    # A named input field is the caller's argument; otherwise the system's state refuses.
    return grpc.StatusCode.INVALID_ARGUMENT if error.field else grpc.StatusCode.FAILED_PRECONDITION


def _domain_failure(error: DomainError, aliases: Mapping[str, str], request_id: str) -> RpcFailure:
    code = code_for_domain_error(error)
    if code is grpc.StatusCode.INTERNAL:
        return internal_failure(request_id)
    message = error.message or error.reason
    metadata: dict[str, str] = {}
    violations: list[Violation] = []
    if error.field:
        field_name = aliases.get(error.field) or FIELD_ALIASES.get(error.field, error.field)
        metadata["field"] = field_name
        violations.append(Violation(field_name, message))
    retry_after: int | None = None
    extra: Metadata = ()
    seconds = getattr(error, "retry_after_seconds", None)
    if isinstance(seconds, int):
        retry_after = seconds
        metadata["retry_after_seconds"] = str(seconds)
        extra = ((RETRY_AFTER_KEY, str(seconds)),)
    attempts_left = getattr(error, "attempts_left", None)
    if isinstance(attempts_left, int) and attempts_left > 0:
        metadata["attempts_left"] = str(attempts_left)
    rule = getattr(error, "rule", None)
    if isinstance(rule, str):
        metadata["rule"] = rule
    return RpcFailure.build(
        code,
        message,
        reason=error.reason,
        metadata=metadata,
        violations=violations,
        retry_after_seconds=retry_after,
        extra_trailers=extra,
    )


def internal_failure(request_id: str) -> RpcFailure:
    return RpcFailure.build(
        grpc.StatusCode.INTERNAL,
        "internal error",
        reason="INTERNAL",
        metadata={"request_id": request_id} if request_id else None,
    )


def to_failure(
    exc: BaseException, *, request_id: str = "", field_aliases: Mapping[str, str] | None = None
) -> RpcFailure:
    """The status a raised exception becomes (never leaking internals)."""
    if isinstance(exc, RpcFailure):
        return exc
    if isinstance(exc, DomainError):
        return _domain_failure(exc, field_aliases or {}, request_id)
    if isinstance(exc, grpc.aio.AioRpcError) and exc.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    ):
        # A dependency we call over gRPC (the Deriv gateway) did not answer.
        return RpcFailure.build(
            grpc.StatusCode.UNAVAILABLE,
            "a service PenPay depends on is unavailable; try again shortly",
            reason="UPSTREAM_UNAVAILABLE",
        )
    return internal_failure(request_id)


@dataclass(frozen=True)
class ParsedStatus:
    """Client side: what a failed call's `grpc-status-details-bin` says (tests and callers)."""

    code: int
    message: str
    error_info: error_details_pb2.ErrorInfo | None
    violations: list[error_details_pb2.BadRequest.FieldViolation] = field(default_factory=list)
    retry_delay_seconds: int | None = None


def parse_status(trailing_metadata: Iterable[tuple[str, object]] | None) -> ParsedStatus | None:
    for key, value in trailing_metadata or ():
        if key != DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        info: error_details_pb2.ErrorInfo | None = None
        violations: list[error_details_pb2.BadRequest.FieldViolation] = []
        retry: int | None = None
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations.extend(bad.field_violations)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry_info = error_details_pb2.RetryInfo()
                detail.Unpack(retry_info)
                retry = retry_info.retry_delay.seconds
        return ParsedStatus(status.code, status.message, info, violations, retry)
    return None
