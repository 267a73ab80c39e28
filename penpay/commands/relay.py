"""`penpay relay`: publish committed outbox rows to Redis Streams until SIGTERM / Ctrl-C.

Needs PENPAY_REDIS_URL (or --redis-url): without Redis the bus is in-process and exists only
inside the process that also runs the consumers (the embedded stack), so a standalone relay
would mark events published that nobody can read. Several relays may run at once.
"""

from __future__ import annotations

import argparse
import asyncio

from penpay.cli_args import add_metrics_listen


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("relay", help="relay the transactional outbox to Redis Streams")
    parser.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    parser.add_argument("--redis-url", help="overrides PENPAY_REDIS_URL")
    parser.add_argument("--stream-prefix", default="", help="Redis key prefix of the streams (default none)")
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
    from penpay.settings import get_settings

    settings = get_settings()
    redis_url = args.redis_url or settings.redis_url
    if not redis_url:
        print(
            "penpay relay needs Redis (PENPAY_REDIS_URL or --redis-url); without it the in-process "
            "bus runs inside the embedded stack, relay and consumers together"
        )
        return 2
    if args.metrics_listen:
        from prometheus_client import start_http_server

        host, _, port = args.metrics_listen.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1")
    asyncio.run(_relay(args.database_url or settings.database_url, redis_url, args))
    return 0


async def _relay(database_url: str, redis_url: str, args: argparse.Namespace) -> None:
    from penpay.bootstrap import bootstrap
    from penpay.settings import get_settings
    from workers.host import run_workers, stop_on_signals
    from workers.relay import OutboxRelay

    settings = get_settings().model_copy(update={"database_url": database_url, "redis_url": redis_url})
    core = bootstrap(settings, pool_size=2)
    bus = core.message_bus(stream_prefix=args.stream_prefix, stream_maxlen=args.stream_maxlen)
    relay = OutboxRelay(core.engine, bus, batch_size=args.batch_size, poll_interval=args.poll_interval)
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
