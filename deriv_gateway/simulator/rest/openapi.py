"""Validation of REST requests and responses against Deriv's OpenAPI 3.1 document.

The document (`rest-api-openapi.json`, the June 2026 generation) is read from a path the caller
gives; the project never copies it in, so without it validation is off and the simulator still
enforces its own business rules. Endpoints the June document lacks (transfer status, client
settings, wallets) are described by `OVERLAY`: PenPay's transcription of the field tables of the
newer generation (S-LLM in the anchors), since no newer schema is published verbatim. Where the
newer generation widens a June schema (transfer `status: dry_run_ok`), the overlay replaces it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]

_REQUEST_ID = {"type": "string", "pattern": r"^[\w\-]{1,128}$"}
_META = {"$ref": "#/components/schemas/PAMetadata"}
_STATUS = {"type": "string", "enum": ["requested", "pending", "complete", "rejected", "failed"]}
_SETTINGS = {
    "type": "object",
    "properties": {
        "deposit_enabled": {"type": "boolean"},
        "withdraw_enabled": {"type": "boolean"},
        "show_real_name": {"type": "boolean"},
    },
    "required": ["deposit_enabled", "withdraw_enabled", "show_real_name"],
}


def _pa_ok(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"data": data, "errors": {"type": "array"}, "metadata": _META},
        "required": ["data", "errors", "metadata"],
    }


_PA_ERROR = {"$ref": "#/components/schemas/PAErrorResponse"}
# wallet errors: a flat list without data/metadata (a third-party observation, anchors §11)
_WALLET_ERROR = {
    "type": "object",
    "properties": {
        "errors": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "status": {"type": "integer"},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                },
                "required": ["status", "code", "message"],
            },
        }
    },
    "required": ["errors"],
}
_WALLET_ERRORS = {str(status): _WALLET_ERROR for status in (400, 401, 403, 404, 500, 503, 504)}

# (method, path template) -> {"request": schema | None, "responses": {status: schema}}
OVERLAY: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/payment-agents/v1/transfer"): {
        "request": {
            "type": "object",
            "properties": {
                "data": {
                    "type": "object",
                    "properties": {
                        "to_nickname": {"type": "string"},
                        "amount": {"type": "string", "pattern": r"^(?:0|[1-9]\d{0,13})(?:\.\d{1,18})?$"},
                        "currency": {"type": "string", "pattern": r"^[A-Z_]{1,18}$"},
                        "notes": {"type": "string"},
                        "request_id": _REQUEST_ID,
                        "dry_run": {"type": "boolean"},
                    },
                    "required": ["to_nickname", "amount", "currency"],
                }
            },
            "required": ["data"],
        },
        "responses": {
            "200": _pa_ok(
                {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string", "enum": ["complete", "pending", "dry_run_ok"]},
                        "transaction_id": {"type": ["integer", "null"]},
                        "client_real_name": {"type": ["string", "null"]},
                        "client_is_agent": {"type": "boolean"},
                    },
                    "required": ["status", "transaction_id", "client_real_name", "client_is_agent"],
                }
            ),
            "400": _PA_ERROR,
            "401": _PA_ERROR,
            "403": _PA_ERROR,
            "500": _PA_ERROR,
            "504": _PA_ERROR,
        },
    },
    ("GET", "/payment-agents/v1/transfer/{request_id}"): {
        "request": None,
        "responses": {
            "200": _pa_ok(
                {
                    "type": "object",
                    "properties": {"status": _STATUS, "transaction_id": {"type": ["integer", "null"]}},
                    "required": ["status", "transaction_id"],
                }
            ),
            "400": _PA_ERROR,
            "401": _PA_ERROR,
            "403": _PA_ERROR,
            "500": _PA_ERROR,
            "504": _PA_ERROR,
        },
    },
    ("GET", "/payment-agents/v1/clients/me"): {
        "request": None,
        "responses": {"200": _pa_ok(_SETTINGS), "401": _PA_ERROR, "403": _PA_ERROR, "500": _PA_ERROR},
    },
    ("PATCH", "/payment-agents/v1/clients/me"): {
        "request": {
            "type": "object",
            "properties": {
                "data": {
                    "type": "object",
                    "properties": {"show_real_name": {"type": "boolean"}},
                    "required": ["show_real_name"],
                }
            },
            "required": ["data"],
        },
        "responses": {"200": _pa_ok(_SETTINGS), "400": _PA_ERROR, "401": _PA_ERROR, "403": _PA_ERROR},
    },
    ("GET", "/wallet/v1/wallets"): {
        "request": None,
        "responses": {
            "200": {
                "type": "object",
                "properties": {
                    "data": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "wallet_id": {"type": "string"},
                                "type": {"type": "string"},
                                "balances": {"type": "object"},
                            },
                            "required": ["wallet_id", "type", "balances"],
                        },
                    }
                },
                "required": ["data"],
            },
            **_WALLET_ERRORS,
        },
    },
    ("GET", "/wallet/v1/transactions/{wallet_type}"): {
        "request": None,
        "responses": {
            "200": {
                "type": "object",
                "properties": {
                    "data": {
                        "type": "object",
                        "properties": {
                            "start_date_time": {"type": ["string", "null"]},
                            "end_date_time": {"type": ["string", "null"]},
                            "transactions": {"type": "array", "items": {"type": "object"}},
                        },
                        "required": ["transactions"],
                    },
                    "links": {
                        "type": "object",
                        "properties": {
                            k: {"type": ["string", "null"]} for k in ("self", "next", "prev", "first")
                        },
                    },
                },
                "required": ["data"],
            },
            **_WALLET_ERRORS,
        },
    },
}


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    body = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{body}$")


@dataclass
class OpenApi:
    """Per-operation request and response schemas, with the overlay applied."""

    document: dict[str, Any]
    overlay: dict[tuple[str, str], dict[str, Any]] = field(default_factory=lambda: OVERLAY)

    @classmethod
    def load(cls, path: Path) -> OpenApi:
        return cls(json.loads(path.read_text()))

    @cached_property
    def _routes(self) -> list[tuple[str, str, re.Pattern[str]]]:
        routes = {
            (method.upper(), template)
            for template, ops in self.document.get("paths", {}).items()
            for method in ops
        }
        routes |= set(self.overlay)
        # literal templates first: /withdraw/verification_code before /withdraw/{request_id}
        ordered = sorted(routes, key=lambda r: (r[1].count("{"), r[1]))
        return [(m, t, _template_regex(t)) for m, t in ordered]

    def for_generation(self, generation: str) -> OpenApi:
        """June: the document as published, the overlay only where the document has no such path."""
        if generation != "june":
            return self
        paths = self.document.get("paths", {})
        kept = {key: v for key, v in self.overlay.items() if key[1] not in paths}
        return OpenApi(self.document, kept)

    def route(self, method: str, path: str) -> str | None:
        for m, template, regex in self._routes:
            if m == method.upper() and regex.match(path):
                return template
        return None

    @cached_property
    def _validators(self) -> dict[int, jsonschema.Draft202012Validator]:
        return {}

    def _validator(self, schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
        # one per schema object (they live as long as the document): building one per request
        # cost more than the simulator's own work
        found = self._validators.get(id(schema))
        if found is None:
            # components travel with each schema so that "#/components/..." resolves
            found = jsonschema.Draft202012Validator({**schema, "components": self.document["components"]})
            self._validators[id(schema)] = found
        return found

    def request_schema(self, method: str, template: str) -> dict[str, Any] | None:
        over = self.overlay.get((method, template))
        if over is not None:
            schema: dict[str, Any] | None = over["request"]
            return schema
        op = self.document["paths"].get(template, {}).get(method.lower(), {})
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        found: dict[str, Any] | None = body.get("schema")
        return found

    def response_schema(self, method: str, template: str, status: int) -> dict[str, Any] | None:
        over = self.overlay.get((method, template))
        if over is not None:
            schema: dict[str, Any] | None = over["responses"].get(str(status))
            return schema
        op = self.document["paths"].get(template, {}).get(method.lower(), {})
        response = op.get("responses", {}).get(str(status))
        if response is None:
            return None
        found: dict[str, Any] | None = response.get("content", {}).get("application/json", {}).get("schema")
        return found

    def check_request(self, method: str, path: str, body: Any) -> list[str]:
        """Problems with a request body ([] when valid or when the operation takes no body)."""
        template = self.route(method, path)
        if template is None:
            return [f"{method} {path}: no such operation in the document"]
        schema = self.request_schema(method.upper(), template)
        if schema is None:
            return [] if body is None else [f"{method} {template}: takes no body"]
        return [
            f"{method} {template} request: {e.message} at {list(e.absolute_path)}"
            for e in self._validator(schema).iter_errors(body)
        ]

    def check_response(self, method: str, path: str, status: int, body: Any) -> list[str]:
        """Problems with a response; a status the document does not describe is reported too."""
        template = self.route(method, path)
        if template is None:
            return [f"{method} {path}: no such operation in the document"]
        schema = self.response_schema(method.upper(), template, status)
        if schema is None:
            return [f"{method} {template}: status {status} is not documented"]
        return [
            f"{method} {template} {status}: {e.message} at {list(e.absolute_path)}"
            for e in self._validator(schema).iter_errors(body)
        ]
