"""`penpay worker saga`: the deposit/withdrawal saga consumer and the sweeper, until SIGTERM.

With Redis (PENPAY_REDIS_URL) it reads the streams the relay fills, as one consumer of the
group "payment-saga" (run as many as you like). Without Redis it is the embedded worker: it
runs the outbox relay on an in-process bus too, and the payment notices and FloatLow alerts beside
it (workers/notifications.py, workers/float_low.py; with Redis they are `penpay worker notify`'s and
`penpay worker audit`'s); the sweeper picks up
whatever a restart lost. PENPAY_CRASH_AT (fault injection, not in production) kills it at a
named checkpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable

from penpay.cli_args import add_metrics_listen

GROUP = "worker"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("saga", help="run the payment sagas (consumer + sweeper)")
    parser.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    parser.add_argument("--no-sweeper", action="store_true", help="consume events only")
    parser.add_argument("--sweeper-only", action="store_true", help="run only the sweeper")
    parser.add_argument("--stream-prefix", default="", help="Redis key prefix of the streams (default none)")
    parser.add_argument("--claim-idle-ms", type=int, default=60_000, help="XAUTOCLAIM idle threshold")
    add_metrics_listen(parser, default="off; the in-flight gauges")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default PENPAY_LOG_LEVEL, INFO)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from penpay.notifiers import missing_provider
    from penpay.settings import get_settings
    from workers.alert_metrics import count_alerts

    problem = missing_provider(get_settings())
    if problem is not None and not get_settings().redis_url:  # it sends the notices itself
        print(f"penpay: {problem}", file=sys.stderr)
        return 2
    count_alerts()  # penpay_alerts_total{kind}: Daraja set-up errors and foreign answers raised here
    if args.metrics_listen:
        from prometheus_client import start_http_server

        host, _, port = args.metrics_listen.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1")
    asyncio.run(_run(args))
    return 0


async def _run(args: argparse.Namespace) -> None:
    from datetime import timedelta

    from penpay.bootstrap import bootstrap, payments
    from penpay.notifiers import build_notifier
    from penpay.settings import get_settings
    from security.rate_limit import InProcessRateLimiter
    from workers.float_low import float_low_consumer
    from workers.host import run_workers, stop_on_signals
    from workers.notifications import notification_consumers
    from workers.relay import OutboxRelay
    from workers.sagas import Sweeper, saga_consumer

    settings = get_settings()
    if args.database_url:
        settings = settings.model_copy(update={"database_url": args.database_url})
    core = bootstrap(settings, pool_size=10)
    wired = payments(core)
    stop = asyncio.Event()
    stop_on_signals(stop)
    tasks = []
    closers: list[Callable[[], Awaitable[None]]] = []
    try:
        consumers = []
        relay = None
        if not args.sweeper_only:
            bus = core.message_bus(stream_prefix=args.stream_prefix)
            consumers.append(saga_consumer(bus, core.engine, wired.saga, claim_idle_ms=args.claim_idle_ms))
            if not settings.redis_url:
                relay = OutboxRelay(core.engine, bus, poll_interval=0.1)
                # The in-process bus is this process's alone: the notices must be read here too.
                notifiers = build_notifier(settings, InProcessRateLimiter())
                closers.append(notifiers.aclose)
                consumers += notification_consumers(bus, core.engine, notifiers.notifier, cipher=core.pii)
                consumers.append(float_low_consumer(bus, core.engine))  # `worker audit`'s with Redis
        if not args.no_sweeper:
            sweeper = Sweeper(
                core.engine,
                wired.saga,
                min_age=timedelta(seconds=settings.sweeper_min_age),
                interval=settings.sweeper_interval,
            )
            tasks.append(sweeper.run(stop))
        tasks.append(run_workers(stop, relay=relay, consumers=consumers))
        await asyncio.gather(*tasks)
    finally:
        for close in closers:
            await close()
        await wired.close()
        await core.close()
