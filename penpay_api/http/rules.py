"""`google.api.http` rules read from service descriptors, and path templates (parse and match).

Pure: no I/O, no aiohttp, no grpc. The template grammar is the one of google/api/http.proto:

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb     = ":" LITERAL ;

`**` may only be the last segment. A variable without `=` is `{x=*}` (one segment).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pool as _descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor

SegmentKind = Literal["literal", "wildcard", "deep"]
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LITERAL_STOP = set("/{}:*=")
_VERBS = ("get", "put", "post", "delete", "patch")


class TemplateError(ValueError):
    """A path template that does not follow the google.api.http grammar."""


class RuleError(ValueError):
    """An http rule that does not fit its method's messages (unknown field, bad body...)."""


@dataclass(frozen=True, slots=True)
class Segment:
    kind: SegmentKind
    value: str = ""


@dataclass(frozen=True, slots=True)
class Variable:
    field_path: str  # dotted, as written in the template ("item.item_id")
    start: int  # first segment index
    end: int  # one past the last segment index (a `**` variable runs to the end of the path)


@dataclass(frozen=True, slots=True)
class PathTemplate:
    template: str
    segments: tuple[Segment, ...]
    variables: tuple[Variable, ...]
    verb: str | None

    @property
    def literal_count(self) -> int:
        return sum(1 for s in self.segments if s.kind == "literal")

    @property
    def has_deep_wildcard(self) -> bool:
        return bool(self.segments) and self.segments[-1].kind == "deep"

    def specificity(self) -> tuple[int, int, int, int]:
        """Higher sorts first when several templates match one path."""
        return (
            1 if self.verb else 0,
            self.literal_count,
            0 if self.has_deep_wildcard else 1,
            len(self.segments),
        )

    def match(self, raw_path: str) -> dict[str, str] | None:
        """Variables bound by `raw_path` (percent-encoded, no query), or None when it does not match."""
        if not raw_path.startswith("/"):
            return None
        body = raw_path[1:]
        if self.verb is not None:
            suffix = ":" + self.verb
            if not body.endswith(suffix):
                return None
            body = body[: -len(suffix)]
        components = body.split("/") if body else []
        decoded = [unquote(c) for c in components]
        n = len(self.segments)
        if self.has_deep_wildcard:
            if len(components) < n - 1:
                return None
        elif len(components) != n:
            return None
        for index, segment in enumerate(self.segments):
            if segment.kind == "deep":
                break
            if segment.kind == "literal":
                if decoded[index] != segment.value:
                    return None
            elif decoded[index] == "":
                return None
        bound: dict[str, str] = {}
        for variable in self.variables:
            end = len(components) if variable.end >= n and self.has_deep_wildcard else variable.end
            bound[variable.field_path] = "/".join(decoded[variable.start : end])
        return bound

    def openapi_path(self) -> str:
        """The template with each variable written `{field.path}` (its own pattern dropped)."""
        parts: list[str] = []
        index = 0
        by_start = {v.start: v for v in self.variables}
        while index < len(self.segments):
            variable = by_start.get(index)
            if variable is not None:
                parts.append("{" + variable.field_path + "}")
                index = max(variable.end, index + 1)
                continue
            segment = self.segments[index]
            parts.append({"literal": segment.value, "wildcard": "*", "deep": "**"}[segment.kind])
            index += 1
        path = "/" + "/".join(parts)
        return path + (":" + self.verb if self.verb else "")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.segments: list[Segment] = []
        self.variables: list[Variable] = []

    def fail(self, why: str) -> TemplateError:
        return TemplateError(f"bad path template {self.text!r} at {self.pos}: {why}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def parse(self) -> PathTemplate:
        self.expect("/")
        if self.pos < len(self.text):
            self.parse_segments(in_variable=False)
        verb = None
        if self.peek() == ":":
            self.pos += 1
            verb = self.literal()
            if not verb:
                raise self.fail("empty verb")
        if self.pos != len(self.text):
            raise self.fail("unexpected character")
        for index, segment in enumerate(self.segments):
            if segment.kind == "deep" and index != len(self.segments) - 1:
                raise self.fail("'**' must be the last segment")
        paths = [v.field_path for v in self.variables]
        if len(set(paths)) != len(paths):
            raise self.fail("a field is bound twice")
        return PathTemplate(self.text, tuple(self.segments), tuple(self.variables), verb)

    def parse_segments(self, *, in_variable: bool) -> None:
        self.parse_segment(in_variable=in_variable)
        while self.peek() == "/":
            self.pos += 1
            self.parse_segment(in_variable=in_variable)

    def parse_segment(self, *, in_variable: bool) -> None:
        if self.text.startswith("**", self.pos):
            self.pos += 2
            self.segments.append(Segment("deep"))
        elif self.peek() == "*":
            self.pos += 1
            self.segments.append(Segment("wildcard"))
        elif self.peek() == "{":
            if in_variable:
                raise self.fail("nested variable")
            self.pos += 1
            field_path = self.field_path()
            start = len(self.segments)
            if self.peek() == "=":
                self.pos += 1
                self.parse_segments(in_variable=True)
            else:
                self.segments.append(Segment("wildcard"))
            self.expect("}")
            self.variables.append(Variable(field_path, start, len(self.segments)))
        else:
            literal = self.literal()
            if not literal:
                raise self.fail("empty segment")
            self.segments.append(Segment("literal", literal))

    def field_path(self) -> str:
        idents = [self.ident()]
        while self.peek() == ".":
            self.pos += 1
            idents.append(self.ident())
        return ".".join(idents)

    def ident(self) -> str:
        found = _IDENT.match(self.text, self.pos)
        if not found:
            raise self.fail("expected a field name")
        self.pos = found.end()
        return found.group(0)

    def literal(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _LITERAL_STOP:
            self.pos += 1
        return unquote(self.text[start : self.pos])


def parse_template(template: str) -> PathTemplate:
    return _Parser(template).parse()


@dataclass(frozen=True, slots=True)
class HttpBinding:
    http_method: str  # upper case: GET, POST, ... or a custom verb
    template: PathTemplate
    body: str  # "" (no body), "*" (whole request) or a top-level field name
    response_body: str  # "" (whole response) or a top-level field name


@dataclass(frozen=True, slots=True)
class Route:
    service: str  # "penpay.payments.v1.PaymentsService"
    method: str  # "InitiateDeposit"
    descriptor: MethodDescriptor = field(compare=False, repr=False)
    binding: HttpBinding
    index: int  # 0 for the main rule, 1.. for additional_bindings

    @property
    def rpc(self) -> str:
        """ "penpay.payments.v1.PaymentsService/InitiateDeposit": the name used in configuration."""
        return f"{self.service}/{self.method}"

    @property
    def grpc_path(self) -> str:
        return f"/{self.service}/{self.method}"

    @property
    def operation_id(self) -> str:
        short = self.service.rsplit(".", 1)[-1]
        return f"{short}_{self.method}" + (str(self.index + 1) if self.index else "")

    @property
    def server_streaming(self) -> bool:
        return bool(self.descriptor.server_streaming)

    @property
    def client_streaming(self) -> bool:
        return bool(self.descriptor.client_streaming)

    @property
    def path_fields(self) -> tuple[str, ...]:
        return tuple(v.field_path for v in self.binding.template.variables)


def _binding_of(rule: http_pb2.HttpRule) -> HttpBinding | None:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        return None
    if kind == "custom":
        verb, path = rule.custom.kind.upper(), rule.custom.path
    else:
        verb, path = kind.upper(), getattr(rule, kind)
    return HttpBinding(verb, parse_template(path), rule.body, rule.response_body)


def http_bindings(method: MethodDescriptor) -> list[HttpBinding]:
    """The method's `google.api.http` rule and its additional_bindings, in declaration order."""
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return []
    rule = options.Extensions[annotations_pb2.http]
    found: list[HttpBinding] = []
    for candidate in (rule, *rule.additional_bindings):
        binding = _binding_of(candidate)
        if binding is not None:
            found.append(binding)
    return found


def resolve_field_path(message: Descriptor, dotted: str) -> list[FieldDescriptor] | None:
    """The chain of fields named by `a.b.c` (proto or JSON names), or None when one is missing."""
    chain: list[FieldDescriptor] = []
    current: Descriptor | None = message
    for name in dotted.split("."):
        if current is None:
            return None
        found = current.fields_by_name.get(name)
        if found is None:
            found = next((f for f in current.fields if f.json_name == name), None)
        if found is None:
            return None
        chain.append(found)
        current = found.message_type if found.type == FieldDescriptor.TYPE_MESSAGE else None
    return chain


def is_repeated(fd: FieldDescriptor) -> bool:
    """Repeated (maps included); protobuf >= 6 spells it `is_repeated`, older ones `label`."""
    flag = getattr(fd, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return bool(fd.label == FieldDescriptor.LABEL_REPEATED)


def _check_binding(method: MethodDescriptor, binding: HttpBinding) -> None:
    where = f"{method.full_name} {binding.http_method} {binding.template.template}"
    request = method.input_type
    for variable in binding.template.variables:
        chain = resolve_field_path(request, variable.field_path)
        if chain is None:
            raise RuleError(f"{where}: no field {variable.field_path!r} in {request.full_name}")
        if any(is_repeated(fd) for fd in chain):
            raise RuleError(f"{where}: path field {variable.field_path!r} is repeated")
        if chain[-1].type == FieldDescriptor.TYPE_MESSAGE:
            raise RuleError(f"{where}: path field {variable.field_path!r} is a message")
    if binding.body not in ("", "*") and binding.body not in request.fields_by_name:
        raise RuleError(f"{where}: body field {binding.body!r} not in {request.full_name}")
    if binding.response_body and binding.response_body not in method.output_type.fields_by_name:
        raise RuleError(
            f"{where}: response_body {binding.response_body!r} not in {method.output_type.full_name}"
        )


def load_routes(services: Iterable[str], pool: _descriptor_pool.DescriptorPool | None = None) -> list[Route]:
    """Every http binding of the named services (fully qualified), checked against the messages.

    Client-streaming and bidirectional methods are not bridged (no route), like methods without a rule.
    """
    pool = pool or _descriptor_pool.Default()
    routes: list[Route] = []
    for name in services:
        try:
            service = pool.FindServiceByName(name)
        except KeyError as exc:
            raise RuleError(
                f"service {name!r} is not in the descriptor pool (import its _pb2 module)"
            ) from exc
        for method in service.methods:
            if method.client_streaming:
                continue
            for index, binding in enumerate(http_bindings(method)):
                _check_binding(method, binding)
                routes.append(Route(service.full_name, method.name, method, binding, index))
    seen: dict[tuple[str, str], Route] = {}
    for route in routes:
        key = (route.binding.http_method, route.binding.template.openapi_path())
        if key in seen:
            raise RuleError(f"{route.rpc} and {seen[key].rpc} both bind {key[0]} {key[1]}")
        seen[key] = route
    return routes


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    params: dict[str, str]


@dataclass(frozen=True, slots=True)
class MethodNotAllowed:
    allowed: tuple[str, ...]


class Router:
    """Finds the route of (HTTP method, raw path); the most specific template wins."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: r.binding.template.specificity(), reverse=True)

    def match(self, http_method: str, raw_path: str) -> Match | MethodNotAllowed | None:
        allowed: list[str] = []
        for route in self.routes:
            params = route.binding.template.match(raw_path)
            if params is None:
                continue
            if route.binding.http_method == http_method.upper():
                return Match(route, params)
            if route.binding.http_method not in allowed:
                allowed.append(route.binding.http_method)
        return MethodNotAllowed(tuple(allowed)) if allowed else None
