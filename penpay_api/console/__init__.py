"""The ops console (`/ops/`) and the API docs (`/docs`), served by the HTTP bridge on its origin.

Server-rendered HTML (Jinja2, autoescaped) made more interactive with htmx; no build step of our
own, and the browser runs only files of this origin (htmx and Swagger UI come from their npm
packages through scripts/vendor_assets.py). Every page is made from OpsService RPCs called over
the bridge's gRPC channel with the caller's own credentials, so the API decides who sees what
(staff roles, four-eyes) exactly as for a JSON client. A page per RPC: a handler in pages.py that
calls `Console.rpc`, a view in views.py and a template.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

OPS_SERVICE = "penpay.ops.v1.OpsService"


def install(app: web.Application, bridge: Any, options: Mapping[str, Any]) -> None:
    """Add the console's routes in front of the bridge's catch-all (when OpsService is bridged)."""
    if not any(rpc.startswith(OPS_SERVICE + "/") for rpc in bridge.rpcs):
        return
    from penpay_api.console.pages import Console

    Console(bridge, **dict(options)).add_routes(app)
