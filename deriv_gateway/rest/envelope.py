"""Deriv's REST answers decoded into the gateway's error classes (sans-I/O: status + body in).

The payment-agent envelope is `{data, errors: [{status, code, detail: {message, next_request_at}}],
metadata}`; wallet endpoints answer `{data, links}` and flat errors `{errors: [{status, code,
message}]}`. Each failure becomes one of deriv_gateway.protocol.errors' classes, so the gRPC layer
and the sagas read a REST failure as they read a v3 one:
- deferred (held back, nothing ran): RateLimit, with `details["retry_after"]` from next_request_at;
- refused for good: PaymentAgentTransferError / PaymentAgentWithdrawError (the REST code kept),
  InvalidToken, PermissionDenied, InputValidationFailed;
- outcome unknown: 5xx (the transient 500s, 504), an answer that is not an envelope;
- two REST-only conditions the client resolves itself and never passes on: RequestIdTaken (the
  request_id ran before: look it up) and RequestIdNotFound (a status lookup found nothing).
"""

from __future__ import annotations

from typing import Any

from deriv_gateway.protocol import errors


class RequestIdTaken(errors.OutcomeUnknown):
    """`RequestIDUsed`: an earlier request with this id reached Deriv. Resolve; never an error to the user."""

    code = "RequestIDUsed"


class RequestIdNotFound(errors.DerivError):
    """A status lookup (or the wallet statement) does not know this request_id."""

    code = "RequestIDNotFound"


class EndpointAbsent(errors.NotExecuted):
    """404 on a path the newer generation has (the June generation answers it so)."""

    code = "EndpointAbsent"


class OperationPending(errors.OutcomeUnknown):
    """Still `requested`/`pending` when the client stopped following it: look again later."""

    code = "Pending"


# codes that refuse a withdrawal's code or OTP: the user must ask for a new code
_CODE_REFUSALS = frozenset({"InvalidOTP", "VerificationCodeFormatInvalid", "OtpValidationRateLimitExceeded"})
_INPUT = frozenset({"InputError", "InvalidRequestIDFormat", "InvalidAgentID", "ValidationError"})


def first_error(body: Any) -> dict[str, Any]:
    items = body.get("errors") if isinstance(body, dict) else None
    if isinstance(items, list) and items and isinstance(items[0], dict):
        return items[0]
    return {}


def decode(status: int, body: Any, *, call: str, now: float) -> Any:
    """The `data` of a success, else raise the error class for this answer.

    `call` is the v3 name of the operation ("paymentagent_transfer", "paymentagent_withdraw", ...):
    it picks the refusal class and travels as `msg_type`, as on v3.
    """
    if not isinstance(body, dict):
        if status >= 500 or status == 0:
            raise errors.BackendError(f"HTTP {status} without a JSON body", msg_type=call)
        raise errors.UnexpectedReply(f"HTTP {status}: not a JSON object", msg_type=call)
    item = first_error(body)
    if 200 <= status < 300 and not item:
        if "data" not in body:
            raise errors.UnexpectedReply("a success without data", msg_type=call)
        return body["data"]
    code = str(item.get("code") or f"HTTP{status}")
    raw_detail = item.get("detail")
    detail: dict[str, Any] = raw_detail if isinstance(raw_detail, dict) else {}
    message = str(detail.get("message") or item.get("message") or code)
    next_at = detail.get("next_request_at", item.get("next_request_at"))
    details: dict[str, Any] = {"http_status": status}
    if isinstance(next_at, int | float) and not isinstance(next_at, bool):
        details["retry_after"] = max(0.0, float(next_at) - now)
    kw: dict[str, Any] = {"code": code, "details": details, "msg_type": call}
    if status == 429 or code in ("RateLimit", "OtpRateLimitExceeded"):
        details.setdefault("retry_after", 60.0)
        raise errors.RateLimit(message, **kw)
    if code == "RequestIDUsed":
        raise RequestIdTaken(message, **kw)
    if code == "RequestIDNotFound":
        raise RequestIdNotFound(message, **kw)
    if status >= 500:
        if status == 504:
            raise errors.ServerTimeout(message, **kw)
        raise errors.BackendError(message, **kw)
    if status == 401:
        raise errors.InvalidToken(message, **kw)
    if status == 403:
        raise errors.PermissionDenied(message, **kw)
    if status == 404 and code == "NotFound":
        raise EndpointAbsent(message, **kw)
    if code in _CODE_REFUSALS:
        raise errors.InvalidToken(message, code=code, details=details, msg_type="paymentagent_withdraw")
    if code in _INPUT:
        raise errors.InputValidationFailed(message, **kw)
    if call == "paymentagent_withdraw":
        raise errors.PaymentAgentWithdrawError(message, **kw)
    if call == "paymentagent_transfer":
        raise errors.PaymentAgentTransferError(message, **kw)
    raise errors.DerivError(message, **kw)
