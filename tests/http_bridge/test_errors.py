"""gRPC status -> HTTP status (grpc-gateway's table), the error body, and google.rpc details."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import status_pb2

from penpay_api.http import errors
from penpay_api.http.metadata import http_code_override
from tests.http_bridge.conftest import Bridge

# The table of the issue (grpc-gateway runtime.HTTPStatusFromCode), written out independently.
EXPECTED = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


@pytest.mark.unit
def test_the_table_covers_every_grpc_code() -> None:
    assert {code.name: errors.http_status(code) for code in grpc.StatusCode} == EXPECTED


@pytest.mark.unit
def test_error_body_is_grpc_gateway_and_problem_json() -> None:
    body = errors.error_body(grpc.StatusCode.NOT_FOUND, "no such transaction", [{"@type": "x"}])
    assert body == {
        "code": 5,
        "message": "no such transaction",
        "details": [{"@type": "x"}],
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "no such transaction",
    }
    assert errors.error_body(grpc.StatusCode.CANCELLED, "gone")["title"] == "Client Closed Request"


@pytest.mark.unit
def test_details_of_an_unknown_type_stay_opaque_and_malformed_trailers_are_ignored() -> None:
    status = status_pb2.Status(code=3, message="m")
    known = any_pb2.Any()
    known.Pack(duration_pb2.Duration(seconds=3))
    unknown = any_pb2.Any(type_url="type.googleapis.com/not.a.Known", value=b"\x08\x01")
    status.details.extend([known, unknown])
    details = errors.details_from_trailers([("grpc-status-details-bin", status.SerializeToString())])
    assert details == [
        {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "3s"},
        {"@type": "type.googleapis.com/not.a.Known", "value": "CAE="},
    ]
    assert errors.details_from_trailers([("grpc-status-details-bin", b"\xff\xff\xff")]) == []
    assert errors.details_from_trailers(None) == []


@pytest.mark.unit
def test_x_http_code_override_never_flips_the_outcome() -> None:
    assert http_code_override([("x-http-code", "201")], success=True) == 201
    assert http_code_override([("x-http-code", "422")], success=True) is None
    assert http_code_override(None, [("x-http-code", "422")], success=False) == 422
    assert http_code_override([("x-http-code", "200")], success=False) is None
    assert http_code_override([("x-http-code", "abc")], success=True) is None


@pytest.mark.integration
@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
async def test_status_mapping_over_http(bridge: Bridge, code: grpc.StatusCode) -> None:
    number = code.value[0]
    async with bridge.http.post(f"/v1/fail/{number}", json={"message": f"boom {code.name}"}) as response:
        assert response.status == EXPECTED[code.name]
        assert response.content_type == "application/json"
        body = await response.json()
    assert bridge.recorder.last("Fail").request.code == number
    if code is grpc.StatusCode.OK:
        assert body == {"outcome": "ok"}
        return
    assert body["code"] == number
    assert body["message"] == f"boom {code.name}"
    assert body["status"] == EXPECTED[code.name]
    assert body["type"] == "about:blank"
    assert isinstance(body["title"], str) and body["title"]


@pytest.mark.integration
async def test_details_pass_through_as_any_json(bridge: Bridge) -> None:
    async with bridge.http.post("/v1/fail/9", json={"message": "amount too small"}) as response:
        assert response.status == 400
        body = await response.json()
    assert body["code"] == 9
    assert body["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "field_violations": [{"field": "amount", "description": "too small"}],
        },
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "AMOUNT_TOO_SMALL",
            "domain": "penpay.test",
            "metadata": {"min": "10"},
        },
    ]


@pytest.mark.integration
async def test_a_login_failure_is_401(bridge: Bridge) -> None:
    async with bridge.http.post("/v1/sessions", json={"login": "a", "password": "wrong"}) as response:
        assert response.status == 401
        body = await response.json()
    assert body["code"] == 16 and body["details"] == []
