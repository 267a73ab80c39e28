"""HTTP request -> request message, response message -> JSON (proto JSON, proto field names).

The request message is built in grpc-gateway's order: the body (`body: "*"` fills the whole message,
`body: "field"` one top-level field), then the path variables (they win over the body), then, for
fields bound neither by the path nor by the body, the query parameters (`a.b=1`, repeated keys for
repeated fields). Unknown body fields are an error; unknown query parameters are ignored, as in
grpc-gateway. A JSON null, and a string or an array where a message is expected, are refused as the
OpenAPI document refuses them (ParseDict would read them as "unset" / an empty message); a 64-bit
integer may still come as a JSON number, as proto JSON allows and clients send small amounts.
Every failure is a TranscodeError, which the bridge answers with 400 INVALID_ARGUMENT.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from penpay_api.http.rules import Route, is_repeated, resolve_field_path

_INT32_TYPES = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_FIXED32,
}
_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED64,
}
_FLOAT_TYPES = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}
# Well-known messages whose JSON form is a string, so one query/path value can set them.
_STRING_WKT = {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
_VALUE = "google.protobuf.Value"
_WRAPPERS = {
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
}


class TranscodeError(ValueError):
    """The HTTP request cannot be turned into the request message (client error)."""


def _reject_constant(name: str) -> Any:
    raise TranscodeError(f"invalid JSON: {name} is not allowed")


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise TranscodeError("request body is not UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise TranscodeError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise TranscodeError("invalid JSON: nested too deeply") from exc


def _scalar_value(field: FieldDescriptor, text: str, name: str) -> Any:
    """One path/query string as the JSON value ParseDict expects for `field`."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_BOOL:
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise TranscodeError(f"{name}: {text!r} is not a boolean")
    if kind in _INT32_TYPES:
        try:
            return int(text, 10)
        except ValueError as exc:
            raise TranscodeError(f"{name}: {text!r} is not an integer") from exc
    if kind in _INT64_TYPES:
        try:
            int(text, 10)
        except ValueError as exc:
            raise TranscodeError(f"{name}: {text!r} is not an integer") from exc
        return text
    if kind in _FLOAT_TYPES:
        if text in ("NaN", "Infinity", "-Infinity"):
            return text
        try:
            return float(text)
        except ValueError as exc:
            raise TranscodeError(f"{name}: {text!r} is not a number") from exc
    if kind == FieldDescriptor.TYPE_ENUM:
        return int(text) if text.lstrip("-").isdigit() else text
    if kind == FieldDescriptor.TYPE_MESSAGE:
        full_name = field.message_type.full_name
        if full_name in _STRING_WKT:
            return text
        if full_name in _WRAPPERS:
            return _scalar_value(field.message_type.fields_by_name["value"], text, name)
        raise TranscodeError(f"{name}: a {full_name} cannot be set from a URL parameter")
    return text  # string; bytes (base64, checked by ParseDict)


def _put(tree: dict[str, Any], chain: list[FieldDescriptor], value: Any) -> None:
    for fd in chain[:-1]:
        node = tree.setdefault(fd.name, {})
        if not isinstance(node, dict):
            raise TranscodeError(f"{fd.name} is set twice")
        tree = node
    tree[chain[-1].name] = value


def _bound_elsewhere(key: str, reserved: Iterable[str]) -> bool:
    return any(key == r or key.startswith(r + ".") or r.startswith(key + ".") for r in reserved)


def _query_tree(
    message: Descriptor, query: Mapping[str, list[str]], reserved: Iterable[str]
) -> dict[str, Any]:
    reserved = tuple(reserved)
    tree: dict[str, Any] = {}
    for key, values in query.items():
        chain = resolve_field_path(message, key)
        if chain is None:
            continue  # unknown parameter: ignored, as grpc-gateway does
        proto_key = ".".join(fd.name for fd in chain)
        if _bound_elsewhere(proto_key, reserved):
            continue
        if any(is_repeated(fd) for fd in chain[:-1]):
            raise TranscodeError(f"{key}: cannot address a field inside a repeated field")
        leaf = chain[-1]
        if leaf.message_type is not None and leaf.message_type.GetOptions().map_entry:
            raise TranscodeError(f"{key}: map fields cannot be set from the query")
        if is_repeated(leaf):
            _put(tree, chain, [_scalar_value(leaf, v, key) for v in values])
        else:
            if len(values) != 1:
                raise TranscodeError(f"{key}: expected one value, got {len(values)}")
            _put(tree, chain, _scalar_value(leaf, values[0], key))
    return tree


def _check_shape(data: Any, descriptor: Descriptor, where: str) -> None:
    """TranscodeError where the JSON's shape is not the document's, in two places ParseDict is lenient:
    a null (it reads "unset"; only wrappers and Value are nullable) and a string or an array where an
    object is expected (it iterates them as if they were one: "" and [] became an empty message)."""
    if not isinstance(data, dict):
        raise TranscodeError(f"body: {where or 'the body'} must be a JSON object")
    for key, value in data.items():
        fd = descriptor.fields_by_name.get(key)
        fd = fd or next((f for f in descriptor.fields if f.json_name == key), None)
        if fd is None:
            continue  # ParseDict reports unknown fields
        path = f"{where}.{fd.name}" if where else fd.name
        message = fd.message_type
        if value is None:
            if message is not None and (message.full_name in _WRAPPERS or message.full_name == _VALUE):
                continue
            raise TranscodeError(f"body: {path}: null is not allowed")
        if message is None:
            continue  # scalars: ParseDict checks them
        if message.GetOptions().map_entry:
            if not isinstance(value, dict):
                raise TranscodeError(f"body: {path} must be a JSON object")
            entry = message.fields_by_name["value"].message_type
            if None in value.values() and (entry is None or entry.full_name != _VALUE):
                raise TranscodeError(f"body: {path}: null is not allowed")
            if entry is not None and not entry.full_name.startswith("google.protobuf."):
                for item in value.values():
                    _check_shape(item, entry, path)
            continue
        if message.full_name.startswith("google.protobuf."):
            continue  # well-known types have JSON forms of their own, which ParseDict checks
        if is_repeated(fd):
            if not isinstance(value, list):
                raise TranscodeError(f"body: {path} must be a JSON array")
            for item in value:
                _check_shape(item, message, path)
        else:
            _check_shape(value, message, path)


def _parse_into(data: Any, message: Message, what: str) -> None:
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise TranscodeError(f"{what}: {exc}") from exc
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise TranscodeError(f"{what}: {type(exc).__name__}") from exc


def build_request(
    route: Route,
    request_class: type[Message],
    path_params: Mapping[str, str],
    query: Mapping[str, list[str]],
    body: bytes,
) -> Message:
    """The request message for one HTTP request matched to `route`."""
    message = request_class()
    descriptor = message.DESCRIPTOR
    body_rule = route.binding.body
    if body_rule and body.strip():
        data = parse_json(body)
        _check_shape(data if body_rule == "*" else {body_rule: data}, descriptor, "")
        if body_rule == "*":
            _parse_into(data, message, "body")
        else:
            _parse_into({body_rule: data}, message, "body")
    params: dict[str, Any] = {}
    path_fields: list[str] = []
    for dotted, text in path_params.items():
        chain = resolve_field_path(descriptor, dotted)
        if chain is None:  # load_routes checked every variable; a mismatch here is a bug
            raise RuntimeError(f"{route.rpc}: path field {dotted} vanished")
        path_fields.append(".".join(fd.name for fd in chain))
        _put(params, chain, _scalar_value(chain[-1], text, dotted))
    if body_rule != "*":
        reserved = [*path_fields, *([body_rule] if body_rule else [])]
        query_tree = _query_tree(descriptor, query, reserved)
        _merge(params, query_tree)
    if params:
        _parse_into(params, message, "parameters")
    return message


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def message_to_json(message: Message, *, emit_unpopulated: bool = True) -> dict[str, Any]:
    document: dict[str, Any] = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=emit_unpopulated,
    )
    return document


def response_payload(route: Route, message: Message, *, emit_unpopulated: bool = True) -> Any:
    """The JSON of the response, or of its `response_body` field when the rule names one."""
    document = message_to_json(message, emit_unpopulated=emit_unpopulated)
    if route.binding.response_body:
        return document.get(route.binding.response_body)
    return document


def dumps(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
