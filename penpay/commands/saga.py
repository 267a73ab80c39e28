"""`penpay worker saga`: the deposit/withdrawal saga consumer and the sweeper, until SIGTERM.

With Redis (PENPAY_REDIS_URL) it reads the streams the relay fills, as one consumer of the
group "payment-saga" (run as many as you like). Without Redis it is the embedded worker: it
runs the outbox relay on an in-process bus too, and the sweeper picks up whatever a restart
lost. PENPAY_CRASH_AT (fault injection, not in production) kills it at a named checkpoint.
"""

from __future__ import annotations

import argparse
import asyncio

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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from security.logs import configure_logging

    configure_logging()
    if args.metrics_listen:
        from prometheus_client import start_http_server

        host, _, port = args.metrics_listen.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1")
    asyncio.run(_run(args))
    return 0


async def _run(args: argparse.Namespace) -> None:
    from datetime import timedelta

    from penpay.bootstrap import bootstrap, payments
    from penpay.settings import get_settings
    from workers.host import run_workers, stop_on_signals
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
    try:
        consumers = []
        relay = None
        if not args.sweeper_only:
            bus = core.message_bus(stream_prefix=args.stream_prefix)
            consumers.append(saga_consumer(bus, core.engine, wired.saga, claim_idle_ms=args.claim_idle_ms))
            if not settings.redis_url:
                relay = OutboxRelay(core.engine, bus, poll_interval=0.1)
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
        await wired.close()
        await core.close()
