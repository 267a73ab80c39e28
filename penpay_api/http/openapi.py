"""OpenAPI 3.0 document generated from the same routes and message descriptors the bridge serves.

Schemas follow proto JSON as the bridge writes it: proto field names, enums as their names,
64-bit integers as decimal strings, Timestamp as a date-time string, Duration as "1.5s", maps as
objects, and unknown properties refused (the bridge refuses them with 400). Messages are
`components/schemas/<full.proto.Name>`. Fields annotated `(google.api.field_behavior) = REQUIRED`
are required; `OUTPUT_ONLY` ones are readOnly.

Told as it is: descriptions come from the proto comments (proto_docs); a message a request can
carry requires what `required_fields` names for it (the servers' own rule); a message found only in
answers lists as required the fields the bridge always writes (no field presence, when it emits
unpopulated fields);
`field_facts` add ranges and the values of string fields (facts.py).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from penpay_api.http.cookies import SAFE_METHODS, CookiePolicy
from penpay_api.http.rules import Route, is_repeated, resolve_field_path
from penpay_api.http.streaming import NDJSON, SSE

OPENAPI_VERSION = "3.0.3"
ERROR_SCHEMA = "penpay.http.Error"
ANY_SCHEMA = "google.protobuf.Any"
IDEMPOTENCY_KEY_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": "^[!-~]([ -~]*[!-~])?$",
}
_INT64_PATTERN = "^-?[0-9]+$"
_UINT64_PATTERN = "^[0-9]+$"
_MAX_QUERY_DEPTH = 4
_FLOAT_LIMIT = 3.4028234663852886e38

_T = FieldDescriptor
_SCALARS: dict[int, dict[str, Any]] = {
    _T.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _T.TYPE_FLOAT: {"type": "number", "format": "float", "minimum": -_FLOAT_LIMIT, "maximum": _FLOAT_LIMIT},
    _T.TYPE_INT32: {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1},
    _T.TYPE_SINT32: {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1},
    _T.TYPE_SFIXED32: {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1},
    _T.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1},
    _T.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1},
    _T.TYPE_INT64: {"type": "string", "format": "int64", "pattern": _INT64_PATTERN},
    _T.TYPE_SINT64: {"type": "string", "format": "int64", "pattern": _INT64_PATTERN},
    _T.TYPE_SFIXED64: {"type": "string", "format": "int64", "pattern": _INT64_PATTERN},
    _T.TYPE_UINT64: {"type": "string", "format": "uint64", "pattern": _UINT64_PATTERN},
    _T.TYPE_FIXED64: {"type": "string", "format": "uint64", "pattern": _UINT64_PATTERN},
    _T.TYPE_BOOL: {"type": "boolean"},
    _T.TYPE_STRING: {"type": "string"},
    _T.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WKT: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
}
_WRAPPER_PREFIX = "google.protobuf."


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _behaviors(fd: FieldDescriptor) -> set[int]:
    options = fd.GetOptions()
    try:
        return set(options.Extensions[field_behavior_pb2.field_behavior])
    except KeyError:
        return set()


def _is_map(fd: FieldDescriptor) -> bool:
    return fd.type == _T.TYPE_MESSAGE and bool(fd.message_type.GetOptions().map_entry)


def _is_wrapper(desc: Descriptor) -> bool:
    return (
        desc.full_name.startswith(_WRAPPER_PREFIX)
        and desc.full_name.endswith("Value")
        and (desc.full_name not in _WKT)
    )


def _has_presence(fd: FieldDescriptor) -> bool:
    """Omitted from proto JSON when unset even with unpopulated fields emitted."""
    if is_repeated(fd):
        return False
    return fd.type == _T.TYPE_MESSAGE or fd.containing_oneof is not None


def _reachable(roots: Iterable[Descriptor]) -> set[str]:
    """The messages a request can carry: its own and every message inside it, at any depth."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        desc = stack.pop()
        if desc.full_name in seen:
            continue
        seen.add(desc.full_name)
        stack.extend(fd.message_type for fd in desc.fields if fd.type == _T.TYPE_MESSAGE)
    return seen


def _describe(schema: dict[str, Any], text: str | None) -> dict[str, Any]:
    if not text:
        return schema
    if "$ref" in schema:  # OpenAPI 3.0 ignores a $ref's siblings
        return {"allOf": [schema], "description": text}
    return {**schema, "description": text}


class SchemaBuilder:
    """components/schemas, filled on demand from message descriptors."""

    def __init__(
        self,
        *,
        docs: Mapping[str, str] | None = None,
        facts: Mapping[str, Mapping[str, Any]] | None = None,
        required_fields: Mapping[str, Iterable[str]] | None = None,
        inputs: Iterable[str] = (),
        emit_unpopulated: bool = True,
    ) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}
        self.docs = docs or {}
        self.facts = facts or {}
        self.required_fields = {k: tuple(v) for k, v in (required_fields or {}).items()}
        self.inputs = frozenset(inputs)  # messages a request carries: required only where told
        self.emit_unpopulated = emit_unpopulated

    def message_ref(self, desc: Descriptor) -> dict[str, Any]:
        inline = self.inline_message(desc)
        if inline is not None:
            return inline
        if desc.full_name not in self.schemas:
            self.schemas[desc.full_name] = {}  # placeholder: recursive messages stop here
            self.schemas[desc.full_name] = self.message_schema(desc)
        return _ref(desc.full_name)

    def inline_message(self, desc: Descriptor) -> dict[str, Any] | None:
        if desc.full_name in _WKT:
            return copy.deepcopy(_WKT[desc.full_name])
        if desc.full_name == ANY_SCHEMA:
            self.schemas.setdefault(ANY_SCHEMA, any_schema())
            return _ref(ANY_SCHEMA)
        if _is_wrapper(desc):
            inner = self.single_value(desc.fields_by_name["value"])
            inner["nullable"] = True
            return inner
        return None

    def single_value(self, fd: FieldDescriptor) -> dict[str, Any]:
        """The schema of one value of `fd` (ignoring repetition)."""
        if fd.type == _T.TYPE_MESSAGE:
            return self.message_ref(fd.message_type)
        if fd.type == _T.TYPE_ENUM:
            schema: dict[str, Any] = {"type": "string", "enum": [v.name for v in fd.enum_type.values]}
            values = [
                f"{v.name}: {self.docs[f'{fd.enum_type.full_name}.{v.name}']}"
                for v in fd.enum_type.values
                if f"{fd.enum_type.full_name}.{v.name}" in self.docs
            ]
            if values:
                schema["description"] = "; ".join(values)
            return schema
        value = copy.deepcopy(_SCALARS[fd.type])
        facts = self.facts.get(fd.full_name)
        if facts:
            value.update(copy.deepcopy(dict(facts)))
        return value

    def field_schema(self, fd: FieldDescriptor) -> dict[str, Any]:
        if _is_map(fd):
            value = self.single_value(fd.message_type.fields_by_name["value"])
            return {"type": "object", "additionalProperties": value}
        if is_repeated(fd):
            return {"type": "array", "items": self.single_value(fd)}
        return self.single_value(fd)

    def _required(self, desc: Descriptor, fds: Iterable[FieldDescriptor]) -> list[str]:
        named = set(self.required_fields.get(desc.full_name, ()))
        if desc.full_name in self.inputs:
            return [
                fd.name for fd in fds if fd.name in named or field_behavior_pb2.REQUIRED in _behaviors(fd)
            ]
        return [
            fd.name
            for fd in fds
            if fd.name in named
            or field_behavior_pb2.REQUIRED in _behaviors(fd)
            or (self.emit_unpopulated and not _has_presence(fd))
        ]

    def message_schema(self, desc: Descriptor, exclude: Iterable[str] = ()) -> dict[str, Any]:
        skip = set(exclude)
        properties: dict[str, Any] = {}
        fields = [fd for fd in desc.fields if fd.name not in skip]
        for fd in fields:
            prop = self.field_schema(fd)
            behaviors = _behaviors(fd)
            if field_behavior_pb2.OUTPUT_ONLY in behaviors:
                prop = {"allOf": [prop], "readOnly": True} if "$ref" in prop else {**prop, "readOnly": True}
            properties[fd.name] = _describe(prop, self.docs.get(fd.full_name))
        schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        required = self._required(desc, fields)
        if required:
            schema["required"] = required
        return _describe(schema, self.docs.get(desc.full_name))


def any_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A google.protobuf.Any in proto JSON: its type URL and the message's fields.",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    }


def error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": (
            "grpc-gateway's error body (code = gRPC status code) that is also an RFC 9457 problem "
            "(type, title, status = HTTP status, detail)."
        ),
        "properties": {
            "code": {"type": "integer", "format": "int32"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": _ref(ANY_SCHEMA)},
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer", "format": "int32"},
            "detail": {"type": "string"},
        },
        "required": ["code", "message", "details", "type", "title", "status"],
    }


def _query_parameters(
    builder: SchemaBuilder,
    desc: Descriptor,
    reserved: tuple[str, ...],
    prefix: str = "",
    seen: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    if len(seen) > _MAX_QUERY_DEPTH or desc.full_name in seen:
        return params
    for fd in desc.fields:
        name = prefix + fd.name
        if any(name == r or name.startswith(r + ".") for r in reserved) or _is_map(fd):
            continue
        if fd.type == _T.TYPE_MESSAGE:
            inline = builder.inline_message(fd.message_type)
            full_name = fd.message_type.full_name
            scalar_like = full_name in (
                "google.protobuf.Timestamp",
                "google.protobuf.Duration",
                "google.protobuf.FieldMask",
            ) or _is_wrapper(fd.message_type)
            if inline is not None and scalar_like and not is_repeated(fd):
                params.append({"name": name, "in": "query", "required": False, "schema": inline})
            elif inline is None and not is_repeated(fd):
                params.extend(
                    _query_parameters(builder, fd.message_type, reserved, name + ".", (*seen, desc.full_name))
                )
            continue
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": False,
            "schema": builder.field_schema(fd),
        }
        if fd.full_name in builder.docs:
            param["description"] = builder.docs[fd.full_name]
        if is_repeated(fd):
            param.update(style="form", explode=True)
        params.append(param)
    return params


def _path_parameter(builder: SchemaBuilder, route: Route, field_path: str) -> dict[str, Any]:
    chain = resolve_field_path(route.descriptor.input_type, field_path)
    assert chain is not None  # checked by load_routes
    schema = builder.single_value(chain[-1])
    return {"name": field_path, "in": "path", "required": True, "schema": schema}


def _request_body(builder: SchemaBuilder, route: Route) -> dict[str, Any] | None:
    body = route.binding.body
    if not body:
        return None
    desc = route.descriptor.input_type
    if body == "*":
        top_level_path_fields = [p for p in route.path_fields if "." not in p]
        if top_level_path_fields:
            schema = builder.message_schema(desc, exclude=top_level_path_fields)
        else:
            schema = builder.message_ref(desc)
    else:
        schema = builder.field_schema(desc.fields_by_name[body])
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _success_schema(builder: SchemaBuilder, route: Route) -> dict[str, Any]:
    out = route.descriptor.output_type
    if route.binding.response_body:
        return builder.field_schema(out.fields_by_name[route.binding.response_body])
    return builder.message_ref(out)


def _responses(builder: SchemaBuilder, route: Route) -> dict[str, Any]:
    schema = _success_schema(builder, route)
    if route.server_streaming:
        ok = {
            "description": 'A stream: one JSON object per line ({"result": ...} or a final {"error": ...}), '
            "or server-sent events when the request accepts text/event-stream.",
            "content": {
                NDJSON: {
                    "schema": {
                        "type": "object",
                        "properties": {"result": schema, "error": _ref(ERROR_SCHEMA)},
                    }
                },
                SSE: {"schema": {"type": "string"}},
            },
        }
    else:
        ok = {"description": "OK", "content": {"application/json": {"schema": schema}}}
    responses: dict[str, Any] = {"200": ok}
    if route.binding.http_method == "POST" and not route.server_streaming:
        responses["201"] = {"description": "Created", "content": copy.deepcopy(ok["content"])}
    responses["default"] = {
        "description": "An error: the gRPC status mapped to HTTP as grpc-gateway does.",
        "content": {"application/json": {"schema": _ref(ERROR_SCHEMA)}},
    }
    return responses


def build_openapi(
    routes: Iterable[Route],
    *,
    title: str = "PenPay API",
    version: str = "v1",
    money_rpcs: Iterable[str] = (),
    public_rpcs: Iterable[str] = (),
    cookie_policy: CookiePolicy | None = None,
    docs: Mapping[str, str] | None = None,
    field_facts: Mapping[str, Mapping[str, Any]] | None = None,
    required_fields: Mapping[str, Iterable[str]] | None = None,
    emit_unpopulated: bool = True,
) -> dict[str, Any]:
    policy = cookie_policy or CookiePolicy()
    money, public = set(money_rpcs), set(public_rpcs)
    routes = list(routes)
    docs = docs or {}
    builder = SchemaBuilder(
        docs=docs,
        facts=field_facts,
        required_fields=required_fields,
        inputs=_reachable(route.descriptor.input_type for route in routes),
        emit_unpopulated=emit_unpopulated,
    )
    builder.schemas[ANY_SCHEMA] = any_schema()
    builder.schemas[ERROR_SCHEMA] = error_schema()
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, dict[str, Any]] = {}
    for route in routes:
        tag = route.service.rsplit(".", 1)[-1]
        service_doc = docs.get(route.service)
        tags.setdefault(
            tag,
            {
                "name": tag,
                "description": f"gRPC service {route.service}" + (f": {service_doc}" if service_doc else ""),
            },
        )
        template = route.binding.template
        parameters = [_path_parameter(builder, route, v.field_path) for v in template.variables]
        if route.binding.body != "*":
            reserved = (*route.path_fields, *((route.binding.body,) if route.binding.body else ()))
            if route.rpc in policy.oauth_callback_rpcs:
                reserved = (*reserved, policy.oauth_nonce_field)  # from the cookie, never the query
            parameters.extend(_query_parameters(builder, route.descriptor.input_type, reserved))
        if route.rpc in money:
            parameters.append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": True,
                    "description": "The client's key for this money movement; a retry reuses it.",
                    "schema": dict(IDEMPOTENCY_KEY_SCHEMA),
                }
            )
        if route.binding.http_method not in SAFE_METHODS and policy.enabled:
            parameters.append(
                {
                    "name": policy.csrf_header,
                    "in": "header",
                    "required": False,
                    "description": (
                        f"Needed when authenticated by cookie: the value of the {policy.csrf_cookie} cookie."
                    ),
                    "schema": {"type": "string"},
                }
            )
        operation: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": f"{route.service}.{route.method}",
            "tags": [tag],
            "responses": _responses(builder, route),
        }
        method_doc = docs.get(f"{route.service}.{route.method}")
        if method_doc:
            operation["description"] = method_doc
        if parameters:
            operation["parameters"] = parameters
        body = _request_body(builder, route)
        if body is not None:
            operation["requestBody"] = body
        if route.rpc in public:
            operation["security"] = []
        method = route.binding.http_method.lower()
        if method not in ("get", "put", "post", "delete", "options", "head", "patch", "trace"):
            continue  # a custom verb OpenAPI cannot describe
        paths.setdefault(template.openapi_path(), {})[method] = operation
    paths["/healthz"] = {
        "get": {
            "operationId": "Bridge_Healthz",
            "summary": "Liveness of the HTTP bridge",
            "tags": ["Bridge"],
            "security": [],
            "responses": {
                "200": {
                    "description": "The bridge is up",
                    "content": {
                        "application/json": {
                            "schema": {"type": "object", "properties": {"status": {"type": "string"}}}
                        }
                    },
                }
            },
        }
    }
    security_schemes: dict[str, Any] = {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    security: list[dict[str, list[str]]] = [{"bearerAuth": []}]
    if policy.enabled:
        security_schemes["cookieAuth"] = {
            "type": "apiKey",
            "in": "cookie",
            "name": policy.access_cookie,
            "description": (
                f"State-changing requests authenticated by cookie need the {policy.csrf_header} header."
            ),
        }
        security.append({"cookieAuth": []})
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version},
        "tags": [*tags.values(), {"name": "Bridge", "description": "The HTTP bridge itself"}],
        "paths": paths,
        "components": {"schemas": builder.schemas, "securitySchemes": security_schemes},
        "security": security,
    }
