"""`penpay worker notify`: payment notices by SMS and email (workers/notifications.py), until SIGTERM.

It reads the status changes the relay publishes to Redis Streams (PENPAY_REDIS_URL), as one
consumer of the groups "payment-notice-sms" and "payment-notice-email" (run as many as you like).
Without Redis the bus lives inside one process: `penpay worker saga` then runs the notices beside
the relay, and this command refuses to start. Production needs both providers (exit 2 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from penpay.cli_args import add_metrics_listen

GROUP = "worker"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("notify", help="send payment notices by SMS and email (needs Redis)")
    parser.add_argument("--stream-prefix", default="", help="Redis key prefix of the streams (default none)")
    parser.add_argument("--claim-idle-ms", type=int, default=60_000, help="XAUTOCLAIM idle threshold")
    add_metrics_listen(parser, default="off")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default PENPAY_LOG_LEVEL, INFO)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from penpay.notifiers import missing_provider
    from penpay.settings import get_settings

    settings = get_settings()
    problem = missing_provider(settings)
    if problem is None and not settings.redis_url:
        problem = "PENPAY_REDIS_URL must be set for penpay worker notify (without it, worker saga sends them)"
    if problem is not None:
        print(f"penpay: {problem}", file=sys.stderr)
        return 2
    if args.metrics_listen:  # the dead letters and handled counters; compose's healthcheck reads it
        from prometheus_client import start_http_server

        host, _, port = args.metrics_listen.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1")
    asyncio.run(_run(args))
    return 0


async def _run(args: argparse.Namespace) -> None:
    from penpay.bootstrap import bootstrap
    from penpay.notifiers import build_notifier
    from penpay.settings import get_settings
    from security.rate_limit import rate_limiter_from_url
    from workers.host import run_workers, stop_on_signals
    from workers.notifications import notification_consumers

    settings = get_settings()
    core = bootstrap(settings, pool_size=5)
    limiter = rate_limiter_from_url(settings.redis_url, prefix=settings.rate_limit_prefix)
    notifiers = build_notifier(settings, limiter)
    stop = asyncio.Event()
    stop_on_signals(stop)
    try:
        bus = core.message_bus(stream_prefix=args.stream_prefix)
        consumers = notification_consumers(
            bus, core.engine, notifiers.notifier, cipher=core.pii, claim_idle_ms=args.claim_idle_ms
        )
        await run_workers(stop, consumers=consumers)
    finally:
        await notifiers.aclose()
        if hasattr(limiter, "aclose"):
            await limiter.aclose()
        await core.close()
