"""HTTP/JSON bridge with grpc-gateway semantics, driven by the `google.api.http` rules of the services.

    from penpay_api.http import build_app, start_server
    app = build_app(["penpay.payments.v1.PaymentsService"], "127.0.0.1:50051")
    runner, port = await start_server(app, "127.0.0.1", 8080)

Modules: rules (descriptors -> routes, path templates), transcode (HTTP <-> messages), errors
(status mapping and error body), metadata (headers <-> metadata), cookies (cookie sessions, CSRF),
streaming (NDJSON / SSE), openapi (OpenAPI 3 document), app (aiohttp application), discovery
(default service list).
"""

from penpay_api.http.app import BridgeConfig, build_app, parse_listen, start_server
from penpay_api.http.cookies import CookiePolicy
from penpay_api.http.cors import CorsPolicy
from penpay_api.http.discovery import discover_services
from penpay_api.http.metadata import ForwardingPolicy

__all__ = [
    "BridgeConfig",
    "CookiePolicy",
    "CorsPolicy",
    "ForwardingPolicy",
    "build_app",
    "discover_services",
    "parse_listen",
    "start_server",
]
