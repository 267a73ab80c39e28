"""Gateway and Deriv errors as gRPC statuses with google.rpc details (in `grpc-status-details-bin`).

grpcio-status is not a dependency: the google.rpc.Status is built and serialized by hand, which is
exactly what grpc_status.rpc_status.to_status does.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from deriv_gateway.journal import StaleFencingToken
from deriv_gateway.money_call import OperationConflict, OperationNotExecuted
from deriv_gateway.protocol import errors
from deriv_gateway.request_rules import InvalidRequest

DOMAIN = "deriv.com"
GATEWAY_DOMAIN = "penpay.deriv-gateway"
DETAILS_KEY = "grpc-status-details-bin"


def _code_for(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, InvalidRequest):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, OperationConflict):
        return grpc.StatusCode.ALREADY_EXISTS
    if isinstance(exc, OperationNotExecuted):
        # a definite answer, not a transient one: the caller decides (send it, or give up)
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, errors.NotLeader | StaleFencingToken):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, errors.RateLimit):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, errors.RequestTimeout | errors.ServerTimeout):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    if isinstance(exc, errors.OutcomeUnknown | errors.NotConnected | errors.ServiceUnavailable):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, errors.InputValidationFailed | errors.SanityCheckFailed):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, errors.PermissionDenied):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(exc, errors.AuthorizationRequired):
        return grpc.StatusCode.UNAUTHENTICATED
    if isinstance(exc, errors.InvalidToken | errors.BadSession):
        # an expired withdrawal code is a precondition the caller must redo; a bad API token is an argument
        return (
            grpc.StatusCode.FAILED_PRECONDITION
            if exc.msg_type == "paymentagent_withdraw"
            else (grpc.StatusCode.INVALID_ARGUMENT)
        )
    if isinstance(
        exc,
        errors.PaymentAgentTransferError | errors.PaymentAgentWithdrawError | errors.AccountDisabled,
    ):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, errors.DerivError):
        return (
            grpc.StatusCode.FAILED_PRECONDITION
            if exc.code in ("ASK_FIX_DETAILS", "NoBalanceVerifyMail", "InvalidEmail")
            else grpc.StatusCode.UNKNOWN
        )
    return grpc.StatusCode.INTERNAL


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str, bytes]:
    """(code, message, serialized google.rpc.Status) for an exception raised by the gateway."""
    code = _code_for(exc)
    details: list[Any] = []
    if isinstance(exc, errors.DerivError):
        message = str(exc.message)
        metadata = {"message": message[:200]}
        if exc.msg_type:
            metadata["msg_type"] = exc.msg_type
        if isinstance(exc, errors.OutcomeUnknown):
            metadata["outcome"] = "unknown"
        elif isinstance(exc, errors.NotExecuted):
            metadata["outcome"] = "not_executed"
        details.append(error_details_pb2.ErrorInfo(reason=exc.code, domain=DOMAIN, metadata=metadata))
        retry_after = exc.details.get("retry_after") if exc.details else None
        if isinstance(exc, errors.RateLimit) or retry_after is not None:
            seconds = float(retry_after) if isinstance(retry_after, int | float) else 60.0
            delay = duration_pb2.Duration(seconds=int(seconds), nanos=int((seconds % 1) * 1e9))
            details.append(error_details_pb2.RetryInfo(retry_delay=delay))
        if isinstance(exc, errors.InputValidationFailed) and exc.details:
            details.append(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=str(k), description=str(v))
                        for k, v in exc.details.items()
                    ]
                )
            )
    elif isinstance(exc, InvalidRequest):
        message = str(exc)
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.reason)
                ]
            )
        )
    elif isinstance(exc, OperationNotExecuted):
        message = str(exc)
        details.append(
            error_details_pb2.ErrorInfo(
                reason="NOT_EXECUTED", domain=GATEWAY_DOMAIN, metadata={"outcome": "not_executed"}
            )
        )
    elif isinstance(exc, OperationConflict | StaleFencingToken):
        message = str(exc)
        reason = "OPERATION_CONFLICT" if isinstance(exc, OperationConflict) else "NOT_LEADER"
        details.append(error_details_pb2.ErrorInfo(reason=reason, domain=GATEWAY_DOMAIN))
    else:
        message = "internal error"
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message)
    for detail in details:
        status.details.add().Pack(detail)
    return code, message, status.SerializeToString()


def parse_details(trailing_metadata: Any) -> status_pb2.Status | None:
    """Client side: the google.rpc.Status from a call's trailing metadata (tests and callers)."""
    for key, value in trailing_metadata or ():
        if key == DETAILS_KEY:
            status = status_pb2.Status()
            status.ParseFromString(value)
            return status
    return None
