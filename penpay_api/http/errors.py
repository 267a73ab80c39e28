"""gRPC status -> HTTP status and error body (grpc-gateway's mapping and shape, plus RFC 9457 fields).

The body is grpc-gateway's `{"code", "message", "details"}` (details are the google.rpc.Status
details from the `grpc-status-details-bin` trailer, each an Any in proto JSON with "@type"), and
also carries `type`, `title`, `status` and `detail` so that it reads as an RFC 9457 problem.
It is served as `application/json`.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any

import grpc
from google.protobuf import any_pb2, json_format
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

# error_details_pb2 is imported for its side effect: BadRequest, ErrorInfo, RetryInfo... must be
# in the default descriptor pool for their Any to be rendered as JSON.
_DETAIL_MODULES = (error_details_pb2,)

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
STATUS_DETAILS_KEY = "grpc-status-details-bin"
PROBLEM_TYPE = "about:blank"


def code_number(code: grpc.StatusCode) -> int:
    return int(code.value[0])


def http_status(code: grpc.StatusCode) -> int:
    return HTTP_STATUS.get(code, 500)


def title_of(status: int) -> str:
    if status == 499:
        return "Client Closed Request"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _detail_json(detail: any_pb2.Any) -> dict[str, Any]:
    try:
        rendered: dict[str, Any] = json_format.MessageToDict(detail, preserving_proto_field_name=True)
        return rendered
    except (json_format.Error, TypeError, KeyError):
        # A detail type this process does not know: keep it opaque but intact.
        return {"@type": detail.type_url, "value": base64.b64encode(detail.value).decode("ascii")}


def details_from_trailers(
    trailing_metadata: Iterable[tuple[str, str | bytes]] | None,
) -> list[dict[str, Any]]:
    """The google.rpc.Status details carried in `grpc-status-details-bin`, as proto JSON."""
    for key, value in trailing_metadata or ():
        if key != STATUS_DETAILS_KEY:
            continue
        raw = value if isinstance(value, bytes) else value.encode("latin-1")
        status = status_pb2.Status()
        try:
            status.ParseFromString(raw)
        except DecodeError:  # a malformed trailer: the status code still stands
            return []
        return [_detail_json(d) for d in status.details]
    return []


def retry_after_header(details: Sequence[dict[str, Any]]) -> dict[str, str]:
    """`Retry-After` (RFC 9110, whole seconds, rounded up) from a RetryInfo detail, for HTTP
    clients that read the header rather than the problem's details."""
    for detail in details:
        delay = detail.get("retryDelay", detail.get("retry_delay"))
        if str(detail.get("@type", "")).endswith(".RetryInfo") and isinstance(delay, str):
            try:
                seconds = float(delay.rstrip("s"))
            except ValueError:
                return {}
            return {"Retry-After": str(max(0, math.ceil(seconds)))}
    return {}


def error_body(
    code: grpc.StatusCode,
    message: str,
    details: Sequence[dict[str, Any]] = (),
    *,
    status: int | None = None,
) -> dict[str, Any]:
    status = http_status(code) if status is None else status
    return {
        "code": code_number(code),
        "message": message,
        "details": list(details),
        "type": PROBLEM_TYPE,
        "title": title_of(status),
        "status": status,
        "detail": message,
    }
