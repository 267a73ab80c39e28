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
import sys
from typing import TYPE_CHECKING

from penpay import event_loop
from penpay.cli_args import add_metrics_listen, add_stream_options, command_settings, serve_metrics

if TYPE_CHECKING:
    from penpay.settings import Settings

GROUP = "worker"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("saga", help="run the payment sagas (consumer + sweeper)")
    parser.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    parser.add_argument("--no-sweeper", action="store_true", help="consume events only")
    parser.add_argument("--sweeper-only", action="store_true", help="run only the sweeper")
    add_stream_options(parser)
    add_metrics_listen(parser, default="off; the in-flight gauges")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default PENPAY_LOG_LEVEL, INFO)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from penpay.notifiers import missing_provider
    from workers.alert_metrics import count_alerts

    settings = command_settings(args)
    problem = missing_provider(settings)
    if problem is not None and not settings.redis_url:  # it sends the notices itself
        print(f"penpay: {problem}", file=sys.stderr)
        return 2
    count_alerts()  # penpay_alerts_total{kind}: Daraja set-up errors and foreign answers raised here
    serve_metrics(args.metrics_listen)
    event_loop.run(_run(settings, args))
    return 0


async def _run(settings: Settings, args: argparse.Namespace) -> None:
    from penpay.bootstrap import bootstrap
    from penpay.wiring.daemon import run_until_signalled
    from penpay.wiring.saga_worker import build_saga_worker

    core = bootstrap(settings, pool_size=10)
    worker = build_saga_worker(
        core,
        stream_prefix=args.stream_prefix,
        consume=not args.sweeper_only,
        sweep=not args.no_sweeper,
        claim_idle_ms=args.claim_idle_ms,
    )
    await run_until_signalled(worker, core)
