"""HTTP pieces -> request message, and messages -> proto JSON, without any socket."""

from __future__ import annotations

from typing import Any

import pytest

from penpay_api.http.rules import Route, load_routes
from penpay_api.http.transcode import TranscodeError, build_request, message_to_json, response_payload
from tests.http_bridge.conftest import SERVICE

pytestmark = pytest.mark.unit


def _route(method: str, index: int = 0) -> Route:
    return next(r for r in load_routes([SERVICE]) if r.method == method and r.index == index)


def _build(
    echo: Any, method: str, request: str, path: dict[str, str], query: dict[str, list[str]], body: bytes = b""
) -> Any:
    return build_request(_route(method), getattr(echo.pb, request), path, query, body)


def test_query_parameters_fill_scalars_repeated_nested_and_well_known_types(echo: Any) -> None:
    message = _build(
        echo,
        "GetItem",
        "GetItemRequest",
        {"item_id": "x"},
        {
            "count": ["-9007199254740993"],
            "tags": ["a", "b"],
            "kind": ["2"],
            "active": ["f"],
            "price": ["NaN"],
            "filter.labels": ["l"],
            "filter.minCount": ["4"],  # JSON names work too
            "filter.kind": ["KIND_BOOK"],
            "created_at": ["2024-05-01T10:00:00.5+03:00"],
            "limit": ["-1"],
            "unknown.field": ["ignored"],
        },
    )
    assert message.item_id == "x"
    assert message.count == -9007199254740993
    assert list(message.tags) == ["a", "b"]
    assert message.kind == 2 and message.active is False
    assert message.price != message.price  # NaN
    assert (message.filter.min_count, list(message.filter.labels), message.filter.kind) == (4, ["l"], 1)
    assert message.created_at.ToJsonString() == "2024-05-01T07:00:00.500Z"
    assert message.limit.value == -1


def test_query_parameters_cannot_override_the_path(echo: Any) -> None:
    message = _build(echo, "GetItem", "GetItemRequest", {"item_id": "from-path"}, {"item_id": ["from-query"]})
    assert message.item_id == "from-path"


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"count": ["1.5"]}, "count"),
        ({"active": ["yes"]}, "active"),
        ({"price": ["cheap"]}, "price"),
        ({"kind": ["KIND_NONE"]}, "KIND_NONE"),
        ({"created_at": ["yesterday"]}, "parameters"),
        ({"filter": ["x"]}, "filter"),
        ({"count": ["1", "2"]}, "one value"),
        ({"filter.min_count": ["99999999999"]}, "parameters"),
    ],
)
def test_bad_query_values_are_transcode_errors(echo: Any, query: dict[str, list[str]], fragment: str) -> None:
    with pytest.raises(TranscodeError, match=fragment):
        _build(echo, "GetItem", "GetItemRequest", {"item_id": "x"}, query)


def test_body_star_then_path_wins(echo: Any) -> None:
    message = build_request(
        _route("Fail"), echo.pb.FailRequest, {"code": "0"}, {}, b'{"code": 5, "message": "m"}'
    )
    assert (message.code, message.message) == (0, "m")  # the path's zero beats the body's 5


def test_field_body_may_be_any_json_value_of_that_field(echo: Any) -> None:
    message = _build(
        echo,
        "UpdateItem",
        "UpdateItemRequest",
        {"item.item_id": "p"},
        {},
        b'{"title": "t", "tags": ["a"], "filter": {"labels": ["z"]}}',
    )
    assert message.item.item_id == "p" and message.item.title == "t"
    assert list(message.item.filter.labels) == ["z"]
    with pytest.raises(TranscodeError, match="body"):
        _build(echo, "UpdateItem", "UpdateItemRequest", {"item.item_id": "p"}, {}, b'"just a string"')


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"title": 1e999999}', b"\xff\xfe", b'{"title": Infinity}', b"[" * 100_000 + b"]" * 100_000],
)
def test_malformed_bodies_are_transcode_errors(echo: Any, body: bytes) -> None:
    with pytest.raises(TranscodeError):
        build_request(_route("CreateItem"), echo.pb.CreateItemRequest, {}, {}, body)


def test_responses_use_proto_names_and_emit_unpopulated_fields(echo: Any) -> None:
    item = echo.pb.Item(item_id="x", count=3, big=2**64 - 1)
    document = message_to_json(item)
    assert document["item_id"] == "x" and document["count"] == "3" and document["big"] == str(2**64 - 1)
    assert document["tags"] == [] and document["kind"] == "KIND_UNSPECIFIED" and document["active"] is False
    assert "filter" not in document  # message fields have presence
    assert message_to_json(item, emit_unpopulated=False) == {
        "item_id": "x",
        "count": "3",
        "big": str(2**64 - 1),
    }
    response = echo.pb.GetFileResponse(file=echo.pb.File(name="n", size=1), etag="e")
    assert response_payload(_route("GetFile"), response) == {"name": "n", "size": "1"}
