"""The public surface inside `penpay up`: the gRPC API and the HTTP bridge in the same process.

The same objects `penpay api` and `penpay http` run; the bridge forwards to the API over a real
gRPC channel on loopback. Outside production the dev-only DevService is bridged too, so a
frontend (and `penpay demo`) can read the verification codes the development notifier kept.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any


async def start_public_surface(stack: AsyncExitStack, core: Any, wired: Any) -> tuple[dict[str, str], Any]:
    """Start both; returns their addresses and the built API (its notifier serves the notices too)."""
    from penpay.wiring.api import build_api
    from penpay_api.http import BridgeConfig, build_app, discover_services, start_server
    from penpay_api.http.app import edge_config
    from penpay_api.http.discovery import packages_for

    settings = core.settings
    api = build_api(core, payments=wired.application)
    await api.server.start()
    stack.push_async_callback(api.close)
    grpc_addr = settings.grpc_addr
    host, _, port = settings.http_addr.rpartition(":")
    services = discover_services(packages_for(settings.app_env))
    app = build_app(services, grpc_addr, config=BridgeConfig(**edge_config(settings)))
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
