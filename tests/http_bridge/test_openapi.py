"""/openapi.json: a valid OpenAPI 3.0 document whose schemas describe what the bridge really answers.

openapi-3.0-schema.json is the OpenAPI Initiative's JSON Schema of OAS 3.0 documents
(https://spec.openapis.org/oas/3.0/schema/2021-09-28, Apache-2.0), kept here so the check needs
nothing beyond jsonschema.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs in the locked dev tools
import pytest

from penpay_api.http.openapi import build_openapi
from penpay_api.http.rules import load_routes
from tests.http_bridge.conftest import SERVICE, TEST_POLICY, Bridge

OAS_SCHEMA = json.loads((Path(__file__).parent / "openapi-3.0-schema.json").read_text())
_VARIABLE = re.compile(r"\{([^}]+)\}")


def problems(document: dict[str, Any]) -> list[str]:
    """Everything wrong with `document` as an OpenAPI 3.0 document (empty when valid)."""
    found = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft4Validator(OAS_SCHEMA).iter_errors(document)
    ]
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    schemas = document.get("components", {}).get("schemas", {})
    found += [
        f"dangling $ref {ref}" for ref in refs if ref.removeprefix("#/components/schemas/") not in schemas
    ]
    for name, schema in schemas.items():
        try:
            jsonschema.Draft4Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            found.append(f"schema {name}: {exc.message}")
    operation_ids: list[str] = []
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            operation_ids.append(operation["operationId"])
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            if declared != set(_VARIABLE.findall(path)):
                found.append(f"{method} {path}: path parameters {sorted(declared)}")
    found += [f"duplicate operationId {o}" for o in set(operation_ids) if operation_ids.count(o) > 1]
    return found


def validator_for(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator({**schema, "components": document["components"]})


@pytest.mark.unit
def test_the_checker_finds_broken_documents(echo: Any) -> None:
    document = build_openapi(load_routes([SERVICE]), money_rpcs=(), cookie_policy=TEST_POLICY)
    assert problems(document) == []
    broken = json.loads(json.dumps(document))
    broken["paths"]["/v1/items/{item_id}"]["get"]["parameters"].pop(0)
    broken["paths"]["/v1/items"]["post"]["responses"]["200"]["content"]["application/json"]["schema"] = {
        "$ref": "#/components/schemas/nope"
    }
    del broken["info"]
    found = problems(broken)
    assert any("info" in p for p in found)
    assert "dangling $ref #/components/schemas/nope" in found
    assert any("/v1/items/{item_id}" in p for p in found)


@pytest.mark.unit
def test_the_penpay_services_document_is_valid() -> None:
    from penpay_api.http import discover_services

    services = discover_services()
    document = build_openapi(load_routes(services), money_rpcs=(), cookie_policy=TEST_POLICY)
    assert problems(document) == []


@pytest.mark.integration
async def test_openapi_json_describes_the_echo_service(bridge: Bridge) -> None:
    async with bridge.http.get("/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    assert problems(document) == []
    assert document["openapi"].startswith("3.0.")
    paths = document["paths"]
    get_item = paths["/v1/items/{item_id}"]["get"]
    assert get_item["operationId"] == "EchoService_GetItem"
    assert paths["/v1/shelves/{shelf}/items/{item_id}"]["get"]["operationId"] == "EchoService_GetItem2"
    params = {p["name"]: p for p in get_item["parameters"]}
    assert params["item_id"]["in"] == "path" and params["item_id"]["required"] is True
    assert params["filter.min_count"]["in"] == "query"
    assert params["tags"]["schema"] == {"type": "array", "items": {"type": "string"}}
    assert params["created_at"]["schema"] == {"type": "string", "format": "date-time"}
    assert params["kind"]["schema"]["enum"] == ["KIND_UNSPECIFIED", "KIND_BOOK", "KIND_PEN"]
    assert "Idempotency-Key" not in params
    create = paths["/v1/items"]["post"]
    idempotency = [p for p in create["parameters"] if p["name"] == "Idempotency-Key"]
    assert idempotency and idempotency[0]["in"] == "header" and idempotency[0]["required"] is True
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/penpay.testing.v1.CreateItemRequest"
    }
    annotate = paths["/v1/items/{item_id}:annotate"]["post"]
    assert annotate["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/penpay.testing.v1.Note"
    }
    assert {p["name"] for p in annotate["parameters"]} == {"item_id", "pin", "X-CSRF-Token"}
    assert "/v1/{name}" in paths  # {name=files/**}
    item = document["components"]["schemas"]["penpay.testing.v1.Item"]
    props = item["properties"]
    assert props["count"]["type"] == "string" and props["count"]["pattern"] == "^-?[0-9]+$"
    assert props["created_at"] == {"type": "string", "format": "date-time"}
    assert props["filter"] == {"$ref": "#/components/schemas/penpay.testing.v1.Filter"}
    assert props["filters"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/penpay.testing.v1.Filter"},
    }
    assert props["attributes"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert props["item_id"]["readOnly"] is True
    assert props["limit"]["nullable"] is True and props["limit"]["type"] == "integer"
    assert props["ttl"]["type"] == "string"
    assert item["required"] == ["title"]
    assert item["additionalProperties"] is False
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert schemes["cookieAuth"]["in"] == "cookie" and schemes["cookieAuth"]["name"] == "penpay_access"
    assert paths["/v1/sessions"]["post"]["security"] == []
    watch = paths["/v1/items:watch"]["get"]["responses"]["200"]["content"]
    assert set(watch) == {"application/x-ndjson", "text/event-stream"}
    error = document["components"]["schemas"]["penpay.http.Error"]
    assert set(error["required"]) >= {"code", "message", "details", "status"}


@pytest.mark.integration
async def test_real_responses_conform_to_the_documented_schemas(bridge: Bridge) -> None:
    async with bridge.http.get("/openapi.json") as response:
        document = await response.json()
    paths = document["paths"]

    def schema_of(path: str, method: str, status: str) -> dict[str, Any]:
        responses = paths[path][method]["responses"]
        schema: dict[str, Any] = responses.get(status, responses["default"])["content"]["application/json"][
            "schema"
        ]
        return schema

    cases = [
        (
            "get",
            "/v1/items/x?count=5&created_at=2024-01-01T00:00:00Z&limit=2&kind=KIND_BOOK",
            None,
            "/v1/items/{item_id}",
        ),
        ("post", "/v1/items", {"title": "t", "attributes": {"a": "b"}}, "/v1/items"),
        ("get", "/v1/files/a/b", None, "/v1/{name}"),
        ("post", "/v1/fail/3", {}, "/v1/fail/{code}"),
        ("post", "/v1/items", {"unknown": 1}, "/v1/items"),
        ("get", "/v1/whoami", None, "/v1/whoami"),
    ]
    for method, url, body, template in cases:
        async with bridge.http.request(method, url, json=body) as response:
            payload = await response.json()
            schema = schema_of(template, method, str(response.status))
        errors = [e.message for e in validator_for(document, schema).iter_errors(payload)]
        assert errors == [], (url, response.status, errors)
    # and the schemas do reject what the bridge would not send
    item_schema = schema_of("/v1/items/{item_id}", "get", "200")
    bad = {"item_id": "x", "title": "t", "count": 5, "kind": "KIND_BOGUS", "surprise": True}
    assert len(list(validator_for(document, item_schema).iter_errors(bad))) == 3
