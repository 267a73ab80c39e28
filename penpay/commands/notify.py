"""`penpay worker notify`: payment notices by SMS and email (workers/notifications.py), until SIGTERM.

It reads the status changes the relay publishes to Redis Streams (PENPAY_REDIS_URL), as one
consumer of the group "payment-notices" (run as many as you like).
Without Redis the bus lives inside one process: `penpay worker saga` then runs the notices beside
the relay, and this command refuses to start. Production needs both providers (exit 2 otherwise).
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
    parser = subparsers.add_parser("notify", help="send payment notices by SMS and email (needs Redis)")
    add_stream_options(parser)
    add_metrics_listen(parser, default="off")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default PENPAY_LOG_LEVEL, INFO)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from penpay.notifiers import missing_provider

    settings = command_settings(args)
    problem = missing_provider(settings)
    if problem is None and not settings.redis_url:
        problem = "PENPAY_REDIS_URL must be set for penpay worker notify (without it, worker saga sends them)"
    if problem is not None:
        print(f"penpay: {problem}", file=sys.stderr)
        return 2
    serve_metrics(args.metrics_listen)  # the dead letters and handled counters; compose's healthcheck
    event_loop.run(_run(settings, args))
    return 0


async def _run(settings: Settings, args: argparse.Namespace) -> None:
    from penpay.bootstrap import bootstrap
    from penpay.wiring.daemon import run_until_signalled
    from penpay.wiring.notify import build_notify_worker

    core = bootstrap(settings, pool_size=5)
    worker = build_notify_worker(core, stream_prefix=args.stream_prefix, claim_idle_ms=args.claim_idle_ms)
    await run_until_signalled(worker, core)
