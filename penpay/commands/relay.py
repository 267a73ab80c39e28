"""`penpay relay`: publish committed outbox rows to Redis Streams until SIGTERM / Ctrl-C.

Needs PENPAY_REDIS_URL (or --redis-url): without Redis the bus is in-process and exists only
inside the process that also runs the consumers (the embedded stack), so a standalone relay
would mark events published that nobody can read. Several relays may run at once.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from penpay import event_loop
from penpay.cli_args import add_metrics_listen, add_stream_options, command_settings, serve_metrics

if TYPE_CHECKING:
    from penpay.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("relay", help="relay the transactional outbox to Redis Streams")
    parser.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    parser.add_argument("--redis-url", help="overrides PENPAY_REDIS_URL")
    add_stream_options(parser, consumer=False)
    parser.add_argument("--batch-size", type=int, default=100, help="rows claimed per pass (default 100)")
    parser.add_argument(
        "--poll-interval", type=float, default=0.5, help="seconds between passes when idle (default 0.5)"
    )
    parser.add_argument(
        "--stream-maxlen",
        type=int,
        default=1_000_000,
        help="approximate length bound of each stream, XADD MAXLEN ~ (default 1000000)",
    )
    add_metrics_listen(parser, default="off")
    parser.add_argument("--once", action="store_true", help="publish everything pending, then exit")
    parser.add_argument("--log-level", help="DEBUG: every published batch, ids only")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = command_settings(args)
    if not settings.redis_url:
        print(
            "penpay relay needs Redis (PENPAY_REDIS_URL or --redis-url); without it the in-process "
            "bus runs inside the embedded stack, relay and consumers together"
        )
        return 2
    serve_metrics(args.metrics_listen)
    event_loop.run(_relay(settings, args))
    return 0


async def _relay(settings: Settings, args: argparse.Namespace) -> None:
    from penpay.bootstrap import bootstrap
    from penpay.wiring.relay import build_relay
    from workers.host import run_workers, stop_on_signals

    core = bootstrap(settings, pool_size=2)
    relay = build_relay(
        core,
        stream_prefix=args.stream_prefix,
        stream_maxlen=args.stream_maxlen,
        batch_size=args.batch_size,
        poll_interval=args.poll_interval,
    )
    try:
        if args.once:
            published = await relay.drain()
            print(f"published {published} events")
        else:
            stop = asyncio.Event()
            stop_on_signals(stop)
            await run_workers(stop, relay=relay)
    finally:
        await core.close()
