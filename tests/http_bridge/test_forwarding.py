"""The bridge forwards real HTTP requests to a real gRPC server: bindings, parameters, bodies, metadata."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.http_bridge.conftest import Bridge

pytestmark = pytest.mark.integration


def _metadata(body: dict[str, Any]) -> dict[str, str]:
    return {entry["key"]: entry["value"] for entry in body["metadata"]}


async def test_get_binds_the_path_variable_and_query_parameters(bridge: Bridge) -> None:
    query = [
        ("count", "12345678901234"),
        ("tags", "a"),
        ("tags", "b c"),
        ("kind", "KIND_PEN"),
        ("active", "true"),
        ("price", "1.5"),
        ("filter.min_count", "3"),
        ("filter.labels", "x"),
        ("filter.labels", "y"),
        ("created_at", "2024-05-01T10:00:00Z"),
        ("limit", "7"),
        ("no_such_field", "ignored"),
    ]
    async with bridge.http.get("/v1/items/it%2042", params=query) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "application/json"
        body = await response.json()
    request = bridge.recorder.last("GetItem").request
    assert request.item_id == "it 42"
    assert request.count == 12345678901234
    assert list(request.tags) == ["a", "b c"]
    assert request.kind == 2
    assert request.active is True
    assert request.price == 1.5
    assert request.filter.min_count == 3
    assert list(request.filter.labels) == ["x", "y"]
    assert request.created_at.seconds == 1714557600
    assert request.limit.value == 7
    # proto JSON with proto field names; int64 as a string; enums by name; unpopulated fields emitted
    assert body["item_id"] == "it 42"
    assert body["count"] == "12345678901234"
    assert body["kind"] == "KIND_PEN"
    assert body["filter"] == {"min_count": 3, "labels": ["x", "y"], "kind": "KIND_UNSPECIFIED"}
    assert body["created_at"] == "2024-05-01T10:00:00Z"
    assert body["limit"] == 7
    assert body["note"] == ""
    assert "itemId" not in body


async def test_additional_binding_routes_to_the_same_rpc(bridge: Bridge) -> None:
    async with bridge.http.get("/v1/shelves/top/items/it-1") as response:
        assert response.status == 200
        body = await response.json()
    request = bridge.recorder.last("GetItem").request
    assert (request.shelf, request.item_id) == ("top", "it-1")
    assert body["shelf"] == "top"


async def test_post_with_the_whole_body_and_x_http_code_201(bridge: Bridge) -> None:
    payload = {
        "title": "pen",
        "count": "5",
        "tags": ["blue"],
        "kind": "KIND_PEN",
        "attributes": {"colour": "blue"},
    }
    headers = {"Idempotency-Key": "key-123"}
    async with bridge.http.post("/v1/items", json=payload, headers=headers) as response:
        assert response.status == 201, await response.text()
        body = await response.json()
        assert response.headers["Grpc-Metadata-x-item-version"] == "7"
        assert "Grpc-Metadata-x-http-code" not in response.headers
    request = bridge.recorder.last("CreateItem").request
    assert (request.title, request.count, list(request.tags), request.kind) == ("pen", 5, ["blue"], 2)
    assert dict(request.attributes) == {"colour": "blue"}
    assert body["item_id"] == "item-1"
    assert body["big"] == str(2**63 + 5)


async def test_post_with_a_field_body_a_verb_and_a_query_parameter(bridge: Bridge) -> None:
    note = {"text": "hello", "author": "ann"}
    async with bridge.http.post("/v1/items/it-9:annotate", json=note, params={"pin": "1"}) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    request = bridge.recorder.last("AnnotateItem").request
    assert request.item_id == "it-9"
    assert (request.note.text, request.note.author) == ("hello", "ann")
    assert request.pin is True
    assert body["note"] == "ann: hello"


async def test_field_body_query_parameters_cannot_set_the_body_field(bridge: Bridge) -> None:
    async with bridge.http.post(
        "/v1/items/it-9:annotate", json={"text": "x"}, params={"note.author": "mallory"}
    ) as response:
        assert response.status == 200
    assert bridge.recorder.last("AnnotateItem").request.note.author == ""


async def test_patch_with_a_nested_path_variable_that_wins_over_the_body(bridge: Bridge) -> None:
    item = {"item_id": "from-body", "title": "new title", "count": 3}
    async with bridge.http.patch(
        "/v1/items/from-path", json=item, params={"update_mask": "title,count"}
    ) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    request = bridge.recorder.last("UpdateItem").request
    assert request.item.item_id == "from-path"
    assert (request.item.title, request.item.count) == ("new title", 3)
    assert request.update_mask == "title,count"
    assert body["note"] == "title,count"


async def test_delete_binding(bridge: Bridge) -> None:
    async with bridge.http.delete("/v1/items/it-3") as response:
        assert response.status == 200
        assert await response.json() == {}
    assert bridge.recorder.last("DeleteItem").request.item_id == "it-3"


async def test_multi_segment_variable_and_response_body(bridge: Bridge) -> None:
    async with bridge.http.get("/v1/files/a/b/c.txt") as response:
        assert response.status == 200
        body = await response.json()
    assert bridge.recorder.last("GetFile").request.name == "files/a/b/c.txt"
    assert body == {"name": "files/a/b/c.txt", "size": "15"}  # only the `file` field (response_body)


@pytest.mark.parametrize(
    ("path", "params", "body", "fragment"),
    [
        ("/v1/items", None, b"{not json", "invalid JSON"),
        ("/v1/items", None, b'{"title": "x", "colour": "red"}', "colour"),
        ("/v1/items", None, b'{"count": "many"}', "count"),
        ("/v1/items", None, b'{"kind": "KIND_NOPE"}', "KIND_NOPE"),
        ("/v1/items", None, b"[1, 2]", "body"),
        ("/v1/items", None, b'{"count": NaN}', "NaN"),
        ("/v1/items/x:annotate", {"pin": "maybe"}, b"{}", "pin"),
    ],
)
async def test_a_bad_request_is_400_without_calling_the_backend(
    bridge: Bridge, path: str, params: dict[str, str] | None, body: bytes, fragment: str
) -> None:
    headers = {"Content-Type": "application/json"}
    async with bridge.http.post(path, data=body, params=params, headers=headers) as response:
        assert response.status == 400
        error = await response.json()
    assert error["code"] == 3
    assert error["status"] == 400
    assert fragment in error["message"]
    assert bridge.recorder.calls == []


async def test_a_bad_query_value_on_get_is_400(bridge: Bridge) -> None:
    async with bridge.http.get("/v1/items/x", params={"count": "12a"}) as response:
        assert response.status == 400
        assert (await response.json())["code"] == 3
    async with bridge.http.get("/v1/items/x", params=[("count", "1"), ("count", "2")]) as response:
        assert response.status == 400
    assert bridge.recorder.calls == []


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "text/plain;charset=UTF-8", "multipart/form-data", None],
)
async def test_a_body_not_declared_json_is_refused_with_415(bridge: Bridge, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    async with bridge.http.post(
        "/v1/items", data=b'{"title": "x"}', headers=headers, skip_auto_headers=["Content-Type"]
    ) as response:
        assert response.status == 415
        assert response.content_type == "application/json"
    assert bridge.recorder.calls == []


async def test_a_json_body_with_a_vendor_json_type_is_accepted(bridge: Bridge) -> None:
    headers = {"Content-Type": "application/merge-patch+json; charset=utf-8"}
    async with bridge.http.post("/v1/items", data=b'{"title": "x"}', headers=headers) as response:
        assert response.status == 201


async def test_an_empty_body_is_an_empty_message(bridge: Bridge) -> None:
    async with bridge.http.post("/v1/whoami") as response:
        assert response.status == 200
    assert bridge.recorder.last("Whoami").request.note == ""


async def test_unknown_route_is_404_json(bridge: Bridge) -> None:
    async with bridge.http.get("/v1/nothing/here") as response:
        assert response.status == 404
        assert response.content_type == "application/json"
        body = await response.json()
    assert body["code"] == 5 and body["status"] == 404 and body["title"] == "Not Found"
    assert len(response.headers["X-Request-Id"]) == 32
    async with bridge.http.get("/v1/items/") as response:  # an empty variable does not match
        assert response.status == 404


async def test_wrong_method_is_405_json_with_allow(bridge: Bridge) -> None:
    async with bridge.http.put("/v1/items/x", json={}) as response:
        assert response.status == 405
        body = await response.json()
        allowed = set(response.headers["Allow"].split(", "))
    assert allowed == {"GET", "DELETE", "PATCH"}
    assert body["code"] == 12 and body["status"] == 405
    assert bridge.recorder.calls == []


async def test_an_rpc_without_http_rule_is_not_reachable(bridge: Bridge) -> None:
    async with bridge.http.post("/penpay.testing.v1.EchoService/Hidden", json={}) as response:
        assert response.status == 404
    assert bridge.recorder.calls == []


async def test_headers_become_metadata(bridge: Bridge) -> None:
    headers = {
        "Authorization": "Bearer header-token-123",
        "Idempotency-Key": "idem-42",
        "X-Request-Id": "req-abc.1",
        "Grpc-Metadata-Tenant": "kenya",
        "Grpc-Metadata-Blob-Bin": base64.b64encode(b"\x00\x01binary").decode(),
        "Grpc-Metadata-X-Forwarded-For": "6.6.6.6",  # may not spoof what the bridge sets
        "Grpc-Metadata-Authorization": "Bearer spoofed",
        "X-Forwarded-For": "7.7.7.7",  # not trusted by default
        "X-Unrelated": "not forwarded",
    }
    async with bridge.http.get("/v1/whoami", headers=headers) as response:
        assert response.status == 200
        assert response.headers["X-Request-Id"] == "req-abc.1"
        body = await response.json()
    seen = bridge.recorder.last("Whoami").metadata
    assert seen["authorization"] == "Bearer header-token-123"
    assert seen["idempotency-key"] == "idem-42"
    assert seen["x-request-id"] == "req-abc.1"
    assert seen["tenant"] == "kenya"
    assert seen["blob-bin"] == b"\x00\x01binary"
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert "x-unrelated" not in seen
    assert "x-forwarded-for" in _metadata(body)
    authorizations = [e for e in body["metadata"] if e["key"] == "authorization"]
    assert authorizations == [{"key": "authorization", "value": "Bearer header-token-123"}]


async def test_a_request_id_is_generated_when_absent(bridge: Bridge) -> None:
    async with bridge.http.get("/v1/whoami", headers={"X-Request-Id": "bad id with spaces"}) as response:
        generated = response.headers["X-Request-Id"]
    assert generated != "bad id with spaces" and len(generated) == 32
    assert bridge.recorder.last("Whoami").metadata["x-request-id"] == generated


async def test_forwarded_for_is_believed_from_a_trusted_proxy(serve_bridge: Any) -> None:
    import dataclasses

    from penpay_api.http import ForwardingPolicy
    from security.proxies import TrustedProxies
    from tests.http_bridge.conftest import TEST_CONFIG

    config = dataclasses.replace(TEST_CONFIG, forwarding=ForwardingPolicy(TrustedProxies.parse("127.0.0.1")))
    async with serve_bridge(config) as bridge:
        headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}  # 6.6.6.6: whatever the client wrote
        async with bridge.http.get("/v1/whoami", headers=headers) as response:
            assert response.status == 200
        # one address, the client's: the API believes it from the bridge
        assert bridge.recorder.last("Whoami").metadata["x-forwarded-for"] == "203.0.113.9"


async def test_grpc_timeout_header_sets_the_deadline(bridge: Bridge) -> None:
    async with bridge.http.get(
        "/v1/items:watch", params={"count": "1", "delay": "2"}, headers={"Grpc-Timeout": "100m"}
    ) as response:
        text = await response.text()
    # the deadline passes while the server waits: the stream ends with DEADLINE_EXCEEDED
    assert '"code":4' in text


async def test_healthz(bridge: Bridge) -> None:
    async with bridge.http.get("/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_backend_down_is_503(echo: Any) -> None:
    import socket

    from penpay_api.http import build_app, start_server

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    app = build_app(["penpay.testing.v1.EchoService"], f"127.0.0.1:{free_port}")
    runner, port = await start_server(app, "127.0.0.1", 0)
    try:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/v1/items/x") as response:
                assert response.status == 503
                assert (await response.json())["code"] == 14
    finally:
        await runner.cleanup()
