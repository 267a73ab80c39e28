"""`penpay sim deriv`: run the Deriv WebSocket API v3 simulator (see deriv_gateway.simulator)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

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
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
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


async def _serve(config: Any) -> None:
    from deriv_gateway.simulator import DerivSimulator

    sim = DerivSimulator(config)
    ports = await sim.start()
    # one JSON line so scripts can find the ports when started with port 0
    print(
        json.dumps(
            {"ws_url": sim.url(app_id=None), "ws_port": ports.ws, "control_url": sim.control_url},
        ),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = build_config(args)
    except (OSError, ValueError) as exc:
        print(f"penpay sim deriv: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_serve(config))
    return 0
