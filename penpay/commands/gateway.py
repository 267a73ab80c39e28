"""`penpay gateway`: the single-instance Deriv gateway daemon (gRPC DerivGatewayService).

Configuration by environment: PENPAY_DERIV_WS_URL, PENPAY_DERIV_APP_ID, PENPAY_DERIV_AGENT_TOKEN,
PENPAY_GATEWAY_ADDR, PENPAY_REDIS_URL (absent: embedded mode, always leader), PENPAY_DATABASE_URL;
optional PENPAY_GATEWAY_LEASE_TTL / _LEASE_RETRY / _REQUEST_TIMEOUT / _UNKNOWN_SETTLE (seconds).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

from penpay import event_loop
from penpay.cli_args import add_listen

if TYPE_CHECKING:
    from penpay.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("gateway", help="run the Deriv gateway daemon (gRPC, one agent WebSocket)")
    add_listen(parser, what="serve gRPC here", default="PENPAY_GATEWAY_ADDR", aliases=("--addr",))
    parser.add_argument("--ws-url", help="Deriv WebSocket URL (overrides PENPAY_DERIV_WS_URL)")
    parser.add_argument("--database-url", help="journal database (overrides PENPAY_DATABASE_URL)")
    parser.add_argument("--redis-url", help="lease Redis (overrides PENPAY_REDIS_URL)")
    parser.add_argument("--lease-ttl", type=float, help="lease TTL in seconds (takeover bound ~ ttl + retry)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default PENPAY_LOG_LEVEL, INFO)")
    # Deprecated: every process logs JSON (security/logs.py); kept so old command lines still run.
    parser.add_argument("--json-logs", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from penpay.settings import get_settings

    overrides = {
        key: value
        for key, value in (
            ("grpc_addr", args.listen),
            ("ws_url", args.ws_url),
            ("database_url", args.database_url),
            ("redis_url", args.redis_url),
            ("lease_ttl", args.lease_ttl),
        )
        if value is not None
    }
    return event_loop.run(_serve(get_settings(), overrides))


async def _serve(settings: Settings, overrides: dict[str, Any]) -> int:
    from penpay.wiring.gateway import build_gateway
    from workers.host import stop_on_signals

    if not settings.deriv_agent_token.get_secret_value():
        print("PENPAY_DERIV_AGENT_TOKEN is not set")
        return 2
    server = build_gateway(settings, **overrides)
    stop = asyncio.Event()
    stop_on_signals(stop)
    await server.start()
    print(f"penpay gateway listening on {server.address}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0
