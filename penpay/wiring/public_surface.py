"""The public surface inside `penpay up`: the gRPC API and the HTTP bridge in the same process.

The same objects `penpay api` and `penpay http` run; the bridge forwards to the API over a real
gRPC channel on loopback. Outside production the dev-only DevService is bridged too, so a
frontend (and `penpay demo`) can read the verification codes the development notifier kept.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

    from penpay.settings import Settings


def bridged_services(settings: Settings) -> list[str]:
    """Every penpay v1 service with http rules in the generated packages (the dev sinks outside
    production); importing them is what lets `--service` name them."""
    from penpay_api.http.discovery import discover_services, packages_for

    return discover_services(packages_for(settings.app_env))


def build_bridge(
    settings: Settings,
    *,
    services: list[str] | None = None,
    grpc_target: str | None = None,
    secure_cookies: bool | None = None,
    default_timeout: float | None = 30.0,
) -> web.Application:
    """The HTTP/JSON bridge (`penpay http`, `penpay up`) forwarding to PENPAY_GRPC_ADDR; ValueError
    for an unknown service or a bad http rule."""
    from penpay_api.http import BridgeConfig, CookiePolicy, build_app
    from penpay_api.http.app import edge_config

    cookies = CookiePolicy() if secure_cookies is None else CookiePolicy(secure=secure_cookies)
    config = BridgeConfig(cookie_policy=cookies, **edge_config(settings), default_timeout=default_timeout)
    return build_app(services or bridged_services(settings), grpc_target or settings.grpc_addr, config=config)


async def start_public_surface(stack: AsyncExitStack, core: Any, wired: Any) -> tuple[dict[str, str], Any]:
    """Start both; returns their addresses and the built API (its notifier serves the notices too)."""
    from penpay.wiring.api import build_api
    from penpay_api.http import start_server

    settings = core.settings
    api = build_api(core, payments=wired)
    await api.server.start()
    stack.push_async_callback(api.close)
    grpc_addr = settings.grpc_addr
    host, _, port = settings.http_addr.rpartition(":")
    app = build_bridge(settings)
    runner, bound = await start_server(app, host or "127.0.0.1", int(port))
    stack.push_async_callback(runner.cleanup)
    return {
        "gRPC API (health, reflection)": grpc_addr,
        "HTTP/JSON bridge": f"http://{host or '127.0.0.1'}:{bound}",
        "OpenAPI": f"http://{host or '127.0.0.1'}:{bound}/openapi.json",
        "API docs": f"http://{host or '127.0.0.1'}:{bound}/docs",
        "ops console": f"http://{host or '127.0.0.1'}:{bound}/ops/",
        "metrics": f"http://{settings.metrics_addr}/metrics",
    }, api
