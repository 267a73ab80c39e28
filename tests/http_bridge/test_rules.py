"""Path templates (google.api.http grammar), matching, route precedence, rules read from descriptors."""

from __future__ import annotations

from typing import Any

import pytest

from penpay_api.http.rules import (
    MethodNotAllowed,
    Router,
    RuleError,
    TemplateError,
    http_bindings,
    load_routes,
    parse_template,
)
from tests.http_bridge.conftest import SERVICE

pytestmark = pytest.mark.unit


def test_a_template_with_a_variable_and_a_verb() -> None:
    template = parse_template("/v1/withdrawals/{transaction_id}:confirm")
    assert [s.kind for s in template.segments] == ["literal", "literal", "wildcard"]
    assert template.verb == "confirm"
    assert template.match("/v1/withdrawals/tx-1:confirm") == {"transaction_id": "tx-1"}
    assert template.match("/v1/withdrawals/tx-1") is None
    assert template.match("/v1/withdrawals/tx-1:cancel") is None
    assert template.match("/v1/withdrawals/:confirm") is None  # an empty variable matches nothing
    assert template.openapi_path() == "/v1/withdrawals/{transaction_id}:confirm"


def test_variables_with_segments_and_nested_field_paths() -> None:
    template = parse_template("/v1/{name=users/*}/items/{item.id}")
    assert template.match("/v1/users/ann/items/42") == {"name": "users/ann", "item.id": "42"}
    assert template.match("/v1/groups/ann/items/42") is None
    assert template.openapi_path() == "/v1/{name}/items/{item.id}"


def test_a_double_wildcard_takes_the_rest_of_the_path() -> None:
    template = parse_template("/v1/{path=files/**}")
    assert template.match("/v1/files/a/b/c") == {"path": "files/a/b/c"}
    assert template.match("/v1/files") == {"path": "files"}
    assert template.match("/v1/other/a") is None
    unbound = parse_template("/static/**")
    assert unbound.match("/static/x/y") == {}


def test_percent_encoded_values_are_decoded() -> None:
    template = parse_template("/v1/items/{id}")
    assert template.match("/v1/items/a%20b%2Fc") == {"id": "a b/c"}
    assert template.match("/v1/items/a/b") is None


def test_the_root_template() -> None:
    assert parse_template("/").match("/") == {}
    assert parse_template("/").match("/x") is None


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "v1/items",
        "/v1/{id",
        "/v1/{}",
        "/v1/{a={b}}",
        "/v1/**/x",
        "/v1//x",
        "/v1/x:",
        "/v1/{id}/{id}",
        "/v1:a/b",
    ],
)
def test_malformed_templates_are_refused(bad: str) -> None:
    with pytest.raises(TemplateError):
        parse_template(bad)


def test_rules_are_read_from_the_descriptors(echo: Any) -> None:
    get_item = echo.pb.DESCRIPTOR.services_by_name["EchoService"].methods_by_name["GetItem"]
    bindings = http_bindings(get_item)
    assert [(b.http_method, b.template.template) for b in bindings] == [
        ("GET", "/v1/items/{item_id}"),
        ("GET", "/v1/shelves/{shelf}/items/{item_id}"),
    ]
    hidden = echo.pb.DESCRIPTOR.services_by_name["EchoService"].methods_by_name["Hidden"]
    assert http_bindings(hidden) == []
    routes = load_routes([SERVICE])
    by_rpc = {(r.method, r.index): r for r in routes}
    assert ("Hidden", 0) not in by_rpc
    assert by_rpc[("UpdateItem", 0)].binding.body == "item"
    assert by_rpc[("GetFile", 0)].binding.response_body == "file"
    assert by_rpc[("WatchItems", 0)].server_streaming
    assert by_rpc[("GetItem", 1)].operation_id == "EchoService_GetItem2"
    assert by_rpc[("GetItem", 0)].grpc_path == "/penpay.testing.v1.EchoService/GetItem"


def test_an_unknown_service_is_an_error(echo: Any) -> None:
    with pytest.raises(RuleError, match="not in the descriptor pool"):
        load_routes(["penpay.testing.v1.NoSuchService"])


def test_the_most_specific_route_wins_and_405_lists_the_methods(echo: Any) -> None:
    router = Router(load_routes([SERVICE]))
    found = router.match("POST", "/v1/items/x:annotate")
    assert not isinstance(found, MethodNotAllowed) and found is not None
    assert found.route.method == "AnnotateItem" and found.params == {"item_id": "x"}
    found = router.match("GET", "/v1/items/x:annotate")  # no GET with the verb: the plain template binds it
    assert not isinstance(found, MethodNotAllowed) and found is not None
    assert found.route.method == "GetItem" and found.params == {"item_id": "x:annotate"}
    found = router.match("GET", "/v1/items:watch")
    assert not isinstance(found, MethodNotAllowed) and found is not None
    assert found.route.method == "WatchItems"
    refused = router.match("PUT", "/v1/items/x")
    assert isinstance(refused, MethodNotAllowed)
    assert set(refused.allowed) == {"GET", "PATCH", "DELETE"}
    assert router.match("GET", "/v2/items/x") is None


def test_rules_that_do_not_fit_their_messages_are_refused() -> None:
    from google.api import annotations_pb2, http_pb2
    from google.protobuf import descriptor_pb2, descriptor_pool

    pool = descriptor_pool.DescriptorPool()
    for dependency in (descriptor_pb2, http_pb2, annotations_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        dependency.DESCRIPTOR.CopyToProto(proto)
        pool.Add(proto)

    def service_with(name: str, path: str, body: str = "") -> str:
        file = descriptor_pb2.FileDescriptorProto(
            name=f"bad_{name}.proto",
            package=f"bad.{name}",
            syntax="proto3",
            dependency=["google/api/annotations.proto"],
        )
        message = file.message_type.add(name="Req")
        message.field.add(name="id", number=1, type=9, label=1)
        message.field.add(name="tags", number=2, type=9, label=3)
        file.message_type.add(name="Res")
        service = file.service.add(name="BadService")
        method = service.method.add(name="Do", input_type=f".bad.{name}.Req", output_type=f".bad.{name}.Res")
        rule = method.options.Extensions[annotations_pb2.http]
        rule.post = path
        rule.body = body
        pool.Add(file)
        return f"bad.{name}.BadService"

    assert [r.method for r in load_routes([service_with("good", "/v0/{id}", body="*")], pool)] == ["Do"]
    with pytest.raises(RuleError, match="no field 'nope'"):
        load_routes([service_with("a", "/v1/{nope}")], pool)
    with pytest.raises(RuleError, match="repeated"):
        load_routes([service_with("b", "/v2/{tags}")], pool)
    with pytest.raises(RuleError, match="body field"):
        load_routes([service_with("c", "/v3/{id}", body="missing")], pool)
