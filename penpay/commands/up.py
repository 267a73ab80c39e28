"""`penpay up`: the whole stack in one process on embedded defaults, until Ctrl-C.

SQLite (PENPAY_DATABASE_URL, default ./penpay.db), in-process bus, both simulators, gateway,
M-Pesa callbacks, relay, saga workers, gRPC API and HTTP bridge. Prints the addresses.
"""

from __future__ import annotations

import argparse
import asyncio


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("up", help="run the whole stack on embedded defaults (simulators)")
    parser.add_argument("--state-dir", default=".penpay", help="where the embedded stack keeps its files")
    parser.add_argument("--for-seconds", type=float, help="stop after this long (smoke runs)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default PENPAY_LOG_LEVEL, WARNING)")
    parser.set_defaults(handler=run, default_log_level="WARNING")


def run(args: argparse.Namespace) -> int:
    from workers.alert_metrics import count_alerts

    count_alerts()  # served with the API's metrics in this one process
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from penpay.embedded import EmbeddedStack, embedded_settings
    from penpay.settings import get_settings
    from workers.host import stop_on_signals

    state = Path(args.state_dir)
    stack = EmbeddedStack(embedded_settings(get_settings(), state), state)
    stop = asyncio.Event()
    stop_on_signals(stop)
    try:
        await stack.start()
        print("PenPay is up (embedded: SQLite, in-process bus, simulators). Ctrl-C stops it.")
        for name, address in stack.addresses.items():
            print(f"  {name:<28} {address}")
        print("ready", flush=True)
        if args.for_seconds:
            await asyncio.wait([asyncio.ensure_future(stop.wait())], timeout=args.for_seconds)
        else:
            await stop.wait()
    finally:
        await stack.stop()
    print("stopped")
    return 0
