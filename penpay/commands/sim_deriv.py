"""`penpay sim deriv`: run the Deriv WebSocket API v3 simulator (see deriv_gateway.simulator)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

from penpay import event_loop
from penpay.cli_args import add_simulator_listen, listen_of

GROUP = "sim"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "deriv",
        help="Deriv WebSocket API v3 simulator",
        description="Serve ws://HOST:PORT/websockets/v3?app_id=N with seeded accounts, books and faults.",
    )
    add_simulator_listen(parser, default_port=8765, what="serve the WebSocket API here")
    parser.add_argument("--seed", type=int, default=0, help="seed for ids, codes and fault schedules")
    parser.add_argument(
        "--control-port",
        type=int,
        default=8768,
        help="control API port (0: any free port; default 8768)",
    )
    parser.add_argument("--no-control", action="store_true", help="do not start the control API")
    parser.add_argument("--accounts", type=Path, help="JSON file with accounts and tokens")
    parser.add_argument("--faults", type=Path, help="JSON file with a list of fault rules")
    parser.add_argument("--no-compression", action="store_true", help="disable permessage-deflate")
    parser.add_argument("--no-rate-limit", action="store_true", help="disable rate limiting")
    parser.add_argument("--request-timeout", type=float, default=15.0, help="seconds before Timeout")
    parser.add_argument("--idle-timeout", type=float, default=120.0, help="seconds before an idle drop")
    parser.add_argument(
        "--rest-port",
        type=int,
        default=None,
        help="also serve Deriv's REST Payment-Agent API on this port, on the same books (0: any)",
    )
    parser.add_argument(
        "--rest-generation", choices=("june", "newer"), default="newer", help="REST API generation"
    )
    parser.add_argument("--rest-openapi", type=Path, help="rest-api-openapi.json: validate REST traffic")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default PENPAY_LOG_LEVEL, INFO)")
    parser.set_defaults(handler=run)


def build_config(args: argparse.Namespace) -> Any:
    from deriv_gateway.simulator import RateLimitConfig, SimulatorConfig

    faults: list[dict[str, Any]] = []
    if args.faults is not None:
        loaded = json.loads(args.faults.read_text())
        faults = loaded.get("rules", []) if isinstance(loaded, dict) else loaded
    host, port = listen_of(args)
    return SimulatorConfig(
        host=host,
        port=port,
        control_port=None if args.no_control else args.control_port,
        seed=args.seed,
        accounts_file=args.accounts,
        compression=not args.no_compression,
        request_timeout=args.request_timeout,
        idle_timeout=args.idle_timeout,
        rate_limits=RateLimitConfig(enabled=not args.no_rate_limit),
        faults=faults,
    )


async def _serve(config: Any, args: argparse.Namespace | None = None) -> None:
    from deriv_gateway.simulator import DerivSimulator

    sim = DerivSimulator(config)
    ports = await sim.start()
    line: dict[str, Any] = {
        "ws_url": sim.url(app_id=None),
        "ws_port": ports.ws,
        "control_url": sim.control_url,
    }
    rest = None
    if args is not None and getattr(args, "rest_port", None) is not None:
        from deriv_gateway.simulator.rest import DerivRestSimulator, RestConfig, RestServerConfig

        rest = DerivRestSimulator(
            sim,
            RestServerConfig(
                host=args.host,
                port=args.rest_port,
                openapi=args.rest_openapi,
                api=RestConfig(generation=args.rest_generation),
            ),
        )
        await rest.start()
        line["rest_url"] = rest.base_url
    # one JSON line so scripts can find the ports when started with port 0
    print(json.dumps(line), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        if rest is not None:
            await rest.stop()
        await sim.stop()


def run(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
    except (OSError, ValueError) as exc:
        print(f"penpay sim deriv: {exc}", file=sys.stderr)
        return 2
    event_loop.run(_serve(config, args))
    return 0
