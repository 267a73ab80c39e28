"""The aiohttp application: match a route, transcode, forward over a grpc.aio channel, map the answer.

Generic: routes come from the `google.api.http` rules of the services named at build time; each
RPC is called with `channel.unary_unary` / `channel.unary_stream` on its full method path, with the
message classes of its descriptors. Nothing here knows a PenPay RPC by name except through the
configurable cookie policy, money RPCs and public RPCs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog
from aiohttp import web
from google.protobuf import descriptor_pool as _descriptor_pool
from google.protobuf import message_factory
from google.protobuf.message import Message

from penpay_api.http import cookies, errors, facts, proto_docs, streaming
from penpay_api.http.cors import CorsPolicy
from penpay_api.http.metadata import (
    ForwardingPolicy,
    HeaderError,
    http_code_override,
    parse_grpc_timeout,
    request_id_of,
    request_metadata,
    response_headers,
)
from penpay_api.http.openapi import build_openapi
from penpay_api.http.rules import Match, MethodNotAllowed, Route, Router, load_routes
from penpay_api.http.transcode import TranscodeError, build_request, dumps, response_payload
from security.http_edge import ProblemJsonRunner
from security.proxies import TrustedProxies

log = structlog.get_logger("penpay_api.http")

DEFAULT_MONEY_RPCS = frozenset(
    {
        "penpay.payments.v1.PaymentsService/InitiateDeposit",
        "penpay.payments.v1.PaymentsService/InitiateWithdrawal",
        "penpay.payments.v1.PaymentsService/ConfirmWithdrawal",
    }
)
# Only for the OpenAPI document (the backend enforces authentication): RPCs callable without a token.
DEFAULT_PUBLIC_RPCS = frozenset(
    f"penpay.auth.v1.AuthService/{name}"
    for name in (
        "Register",
        "Login",
        "Refresh",
        "VerifyPhone",
        "VerifyEmail",
        "RequestPasswordReset",
        "ResetPassword",
        "CompleteDerivOAuth",
    )
) | {"penpay.keys.v1.KeysService/GetJwks"}
HEALTH_PATH = "/healthz"
TOKEN_DELIVERY_HEADER = "X-PenPay-Token-Delivery"
OPENAPI_PATH = "/openapi.json"
_JSON_TYPES = ("application/json",)
# Request storage key (aiohttp >= 3.13 prefers typed keys; a string works everywhere).
_INFO: Any = web.RequestKey("penpay_http", dict) if hasattr(web, "RequestKey") else "penpay_http"


@dataclass(frozen=True)
class BridgeConfig:
    cookie_policy: cookies.CookiePolicy = field(default_factory=cookies.CookiePolicy)
    money_rpcs: frozenset[str] = DEFAULT_MONEY_RPCS
    public_rpcs: frozenset[str] = DEFAULT_PUBLIC_RPCS  # documented without security in OpenAPI
    default_timeout: float | None = 30.0  # unary deadline when the client sends no Grpc-Timeout
    forwarding: ForwardingPolicy = field(default_factory=ForwardingPolicy)
    cors: CorsPolicy = field(default_factory=CorsPolicy)  # same-origin only unless origins are listed
    # Login / Refresh put the tokens in the JSON body only for a request that asks with
    # `X-PenPay-Token-Delivery: body` and carries no session cookie, and only when this is True
    # (PENPAY_HTTP_TOKENS_IN_BODY, for non-browser clients). Otherwise: HttpOnly cookies only.
    tokens_in_body: bool = False
    emit_unpopulated: bool = True  # grpc-gateway v2's default marshaler
    sse_heartbeat: float = 15.0
    max_body_bytes: int = 1024 * 1024
    title: str = "PenPay API"
    version: str = "v1"
    # OpenAPI truth the protos cannot carry (facts.py): ranges and values, required request fields.
    field_facts: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: facts.FIELD_FACTS)
    required_fields: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: facts.REQUIRED_FIELDS)
    # The ops console (/ops/) and the API docs (/docs) on the same origin (penpay_api/console).
    console: bool = True
    console_options: Mapping[str, Any] = field(default_factory=dict)  # penpay_api.console.ConsoleOptions


def edge_config(settings: Any) -> dict[str, Any]:
    """BridgeConfig fields from the edge settings (PENPAY_TRUSTED_PROXIES, PENPAY_CORS_ALLOWED_ORIGINS,
    PENPAY_HTTP_TOKENS_IN_BODY), the same for `penpay http` and `penpay up`."""
    return {
        "forwarding": ForwardingPolicy(TrustedProxies.parse(settings.trusted_proxies)),
        "cors": CorsPolicy.parse(settings.cors_allowed_origins),
        "tokens_in_body": bool(settings.http_tokens_in_body),
        # The console shows the floats against the thresholds the saga workers use (FloatLow).
        "console_options": {
            "float_thresholds": {
                "MPESA_FLOAT": ("KES", int(settings.float_low_kes_cents)),
                "DERIV_AGENT_FLOAT": ("USD", int(settings.float_low_usd_cents)),
            }
        },
    }


@dataclass(frozen=True, slots=True)
class _Rpc:
    route: Route
    request_class: type[Message]
    response_class: type[Message]


def _json(status: int, document: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=dumps(document), content_type="application/json", headers=headers)


def _error(
    code: grpc.StatusCode,
    message: str,
    details: Sequence[dict[str, Any]] = (),
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = errors.error_body(code, message, details, status=status)
    return _json(body["status"], body, headers)


def _query(request: web.Request) -> dict[str, list[str]]:
    query: dict[str, list[str]] = {}
    for key, value in request.rel_url.query.items():
        query.setdefault(key, []).append(value)
    return query


def _is_json(content_type: str) -> bool:
    return content_type in _JSON_TYPES or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


class Bridge:
    """State of one bridge application: routes, channel, callables, configuration."""

    def __init__(
        self,
        services: Sequence[str],
        grpc_target: str,
        config: BridgeConfig,
        *,
        channel_credentials: grpc.ChannelCredentials | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
        pool: _descriptor_pool.DescriptorPool | None = None,
    ) -> None:
        self.services = list(services)
        self.grpc_target = grpc_target
        self.config = config
        self.routes = load_routes(self.services, pool)
        self.router = Router(self.routes)
        self.rpcs = {
            route.rpc: _Rpc(
                route,
                message_factory.GetMessageClass(route.descriptor.input_type),
                message_factory.GetMessageClass(route.descriptor.output_type),
            )
            for route in self.routes
        }
        self.openapi = dumps(
            build_openapi(
                self.routes,
                title=config.title,
                version=config.version,
                money_rpcs=config.money_rpcs,
                public_rpcs=config.public_rpcs,
                cookie_policy=config.cookie_policy,
                docs=proto_docs.load(),
                field_facts=config.field_facts,
                required_fields=config.required_fields,
                emit_unpopulated=config.emit_unpopulated,
            )
        )
        self._credentials = channel_credentials
        self._options = list(channel_options)
        self.channel: grpc.aio.Channel | None = None
        self._callables: dict[str, Any] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self, _app: web.Application | None = None) -> None:
        options = [("grpc.primary_user_agent", "penpay-http-bridge"), *self._options]
        if self._credentials is not None:
            self.channel = grpc.aio.secure_channel(self.grpc_target, self._credentials, options=options)
        else:
            self.channel = grpc.aio.insecure_channel(self.grpc_target, options=options)
        for name, rpc in self.rpcs.items():
            factory = self.channel.unary_stream if rpc.route.server_streaming else self.channel.unary_unary
            self._callables[name] = factory(
                rpc.route.grpc_path,
                request_serializer=_serialize,
                response_deserializer=rpc.response_class.FromString,
            )

    async def close(self, _app: web.Application | None = None) -> None:
        if self.channel is not None:
            await self.channel.close(grace=None)
            self.channel = None

    async def call(
        self, rpc: str, message: Message, *, authorization: str | None, request: web.Request
    ) -> Message:
        """One unary RPC for a page of the bridge's own (the ops console), with the caller's
        credentials and the same metadata rules as a bridged call; raises grpc.aio.AioRpcError."""
        metadata = request_metadata(
            request.headers,
            request.headers.items(),
            authorization=authorization,
            request_id=request[_INFO]["request_id"],
            peer=request.remote,
            policy=self.config.forwarding,
        )
        reply: Message = await self._callables[rpc](
            message, metadata=metadata, timeout=self.config.default_timeout
        )
        return reply

    # -- handling ----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        info: dict[str, Any] = request[_INFO]
        raw_path = request.rel_url.raw_path
        if raw_path == HEALTH_PATH and request.method == "GET":
            info["route"] = HEALTH_PATH
            return _json(200, {"status": "ok"})
        if raw_path == OPENAPI_PATH and request.method == "GET":
            info["route"] = OPENAPI_PATH
            return web.Response(body=self.openapi, content_type="application/json")
        found = self.router.match(request.method, raw_path)
        if found is None:
            info["unmatched"] = True
            return _error(grpc.StatusCode.NOT_FOUND, "Not Found", status=404)
        if isinstance(found, MethodNotAllowed):
            info["route"] = "(method not allowed)"
            return _error(
                grpc.StatusCode.UNIMPLEMENTED,
                "Method Not Allowed",
                status=405,
                headers={"Allow": ", ".join(found.allowed)},
            )
        return await self._forward(request, found, info)

    async def _forward(self, request: web.Request, found: Match, info: dict[str, Any]) -> web.StreamResponse:
        route = found.route
        rpc = self.rpcs[route.rpc]
        info["route"] = route.binding.template.template
        info["rpc"] = route.rpc
        policy = self.config.cookie_policy
        body = b""
        if route.binding.body:
            if request.content_length is not None and request.content_length > self.config.max_body_bytes:
                return _error(grpc.StatusCode.INVALID_ARGUMENT, "request body too large", status=413)
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return _error(grpc.StatusCode.INVALID_ARGUMENT, "request body too large", status=413)
            # A JSON body only, declared as such: form, text and untyped bodies are what a cross-site
            # page can send without a CORS preflight (login CSRF, and defence in depth for the rest).
            content_type = request.content_type if request.headers.get("Content-Type") else ""
            if body.strip() and not _is_json(content_type):
                return _error(
                    grpc.StatusCode.INVALID_ARGUMENT, "Content-Type must be application/json", status=415
                )
        try:
            message = build_request(route, rpc.request_class, found.params, _query(request), body)
        except TranscodeError as exc:
            info["grpc_code"] = grpc.StatusCode.INVALID_ARGUMENT.name
            return _error(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

        credentials = cookies.resolve_credentials(
            policy, route.rpc, request.headers, request.cookies, message
        )
        cookies.fill_oauth_nonce(policy, route.rpc, request.cookies, message)
        info["auth"] = (
            "cookie" if credentials.from_cookie else ("header" if credentials.authorization else "none")
        )
        if cookies.csrf_required(policy, request.method, credentials) and not cookies.csrf_valid(
            policy, request.headers, request.cookies
        ):
            info["csrf"] = "refused"
            return _error(grpc.StatusCode.PERMISSION_DENIED, "CSRF token missing or invalid")

        request_id = info["request_id"]
        try:
            metadata = request_metadata(
                request.headers,
                request.headers.items(),
                authorization=credentials.authorization,
                request_id=request_id,
                peer=request.remote,
                policy=self.config.forwarding,
            )
        except HeaderError as exc:
            return _error(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        timeout = parse_grpc_timeout(request.headers.get("Grpc-Timeout"))
        callable_ = self._callables[route.rpc]
        reply_headers = {"X-Request-Id": request_id}

        if route.server_streaming:
            call = callable_(message, metadata=metadata, timeout=timeout)
            forwarder = streaming.StreamForwarder(
                call,
                lambda m: response_payload(route, m, emit_unpopulated=self.config.emit_unpopulated),
                sse=streaming.wants_sse(request.headers.get("Accept", "")),
                heartbeat=self.config.sse_heartbeat,
                extra_headers=reply_headers,
            )
            try:
                return await forwarder.respond(request)
            finally:
                info["grpc_code"] = forwarder.code.name

        call = callable_(message, metadata=metadata, timeout=timeout or self.config.default_timeout)
        try:
            reply = await call
        except grpc.aio.AioRpcError as exc:
            info["grpc_code"] = exc.code().name
            details = errors.details_from_trailers(exc.trailing_metadata())
            headers = response_headers(exc.initial_metadata())
            status = http_code_override(exc.initial_metadata(), exc.trailing_metadata(), success=False)
            headers = {**headers, **errors.retry_after_header(details), **reply_headers}
            response = _error(exc.code(), exc.details() or "", details, status=status, headers=headers)
            if route.rpc in policy.logout_rpcs:
                cookies.clear_session_cookies(policy, response)
            return response
        info["grpc_code"] = grpc.StatusCode.OK.name
        initial = await call.initial_metadata()
        headers = response_headers(initial)
        http_code = http_code_override(initial, await call.trailing_metadata(), success=True)
        payload = response_payload(route, reply, emit_unpopulated=self.config.emit_unpopulated)
        response = _json(http_code or 200, payload, {**headers, **reply_headers})
        if route.rpc in policy.session_rpcs:
            wants_body = request.headers.get(TOKEN_DELIVERY_HEADER, "").strip().lower() == "body"
            if self.config.tokens_in_body and wants_body and not credentials.from_cookie:
                info["tokens"] = "body"  # a non-browser client, explicitly: no cookies
            else:
                # PEC §13: a browser's tokens travel in HttpOnly cookies only; no script reads them.
                cookies.issue_session_cookies(policy, response, reply)
                response.body = dumps(cookies.strip_tokens(payload))
        if route.rpc in policy.logout_rpcs:
            cookies.clear_session_cookies(policy, response)
        if route.rpc in policy.oauth_start_rpcs and cookies.issue_oauth_nonce(policy, response, reply):
            response.body = dumps(cookies.strip_field(payload, policy.oauth_nonce_field))
        if route.rpc in policy.oauth_callback_rpcs:
            cookies.clear_oauth_nonce(policy, response)  # one binding per nonce
        return response


_STATE = web.AppKey("penpay_http_bridge", Bridge)


def _serialize(message: Message) -> bytes:
    data: bytes = message.SerializeToString()
    return data


@web.middleware
async def _log_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    """One log line per request: no headers, cookies, query string, body or path variables."""
    started = time.perf_counter()
    info: dict[str, Any] = {"request_id": request_id_of(request.headers)}
    request[_INFO] = info
    status = 500
    try:
        response: web.StreamResponse = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers.setdefault("X-Request-Id", info["request_id"])
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception as exc:
        info["exception"] = type(exc).__name__
        log.error("http_request_failed", exception=type(exc).__name__, rpc=info.get("rpc"))
        return _error(
            grpc.StatusCode.INTERNAL, "internal error", headers={"X-Request-Id": info["request_id"]}
        )
    finally:
        fields = {
            "method": request.method,
            "route": info.get("route", "(unmatched)"),
            "rpc": info.get("rpc"),
            "status": status,
            "grpc_code": info.get("grpc_code"),
            "auth": info.get("auth"),
            "request_id": info["request_id"],
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        if "csrf" in info:
            fields["csrf"] = info["csrf"]
        log.info("http_request", **fields)


def build_app(
    services: Sequence[str],
    grpc_target: str,
    *,
    cookie_policy: cookies.CookiePolicy | None = None,
    money_rpcs: Iterable[str] | None = None,
    public_rpcs: Iterable[str] | None = None,
    config: BridgeConfig | None = None,
    channel_credentials: grpc.ChannelCredentials | None = None,
    channel_options: Sequence[tuple[str, Any]] = (),
    pool: _descriptor_pool.DescriptorPool | None = None,
) -> web.Application:
    """The bridge as an aiohttp application, forwarding to `grpc_target`.

    `services` are fully qualified names ("penpay.payments.v1.PaymentsService") whose _pb2 modules
    are imported (so their descriptors are in `pool`, the default pool unless given). The channel
    opens on application start-up and closes on clean-up.
    """
    config = config or BridgeConfig()
    overrides: dict[str, Any] = {}
    if cookie_policy is not None:
        overrides["cookie_policy"] = cookie_policy
    if money_rpcs is not None:
        overrides["money_rpcs"] = frozenset(money_rpcs)
    if public_rpcs is not None:
        overrides["public_rpcs"] = frozenset(public_rpcs)
    if overrides:
        config = dataclasses.replace(config, **overrides)
    bridge = Bridge(
        services,
        grpc_target,
        config,
        channel_credentials=channel_credentials,
        channel_options=channel_options,
        pool=pool,
    )
    app = web.Application(middlewares=[_log_requests], client_max_size=config.max_body_bytes)
    config.cors.install(app)
    app[_STATE] = bridge
    app.on_startup.append(bridge.open)
    app.on_cleanup.append(bridge.close)
    if config.console:
        from penpay_api.console import install

        install(app, bridge, config.console_options)
    # [\s\S], not ".": the path is matched decoded, and a %0A in it must reach the bridge's own
    # router (and its JSON 404 or 400), not aiohttp's text/plain 404.
    app.router.add_route("*", r"/{tail:[\s\S]*}", bridge.handle)
    return app


def bridge_of(app: web.Application) -> Bridge:
    return app[_STATE]


def parse_listen(address: str) -> tuple[str, int]:
    """ "host:port" or "[v6]:port" -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address must be host:port, got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an empty host means every interface


async def start_server(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (0 picks a free port); returns the runner and the bound port.

    aiohttp's access log is off: it would print query strings. The bridge logs its own lines.
    An over-large request head gets problem JSON 431 (security/http_edge.py).
    """
    runner = ProblemJsonRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = next((a[1] for a in runner.addresses if isinstance(a, tuple | list)), port)
    return runner, int(bound)
