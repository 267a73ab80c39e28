"""`penpay worker reconcile`: reconcile with the providers every PENPAY_RECONCILE_INTERVAL seconds.

Each run covers what the last successful one did not: from the cursor (the first time, and never
further back than M-Pesa keeps pulled transactions, 48 hours) to PENPAY_RECONCILE_LAG seconds ago. A
failed run moves no cursor: the next run covers its window again.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from penpay import event_loop
from penpay.cli_args import add_metrics_listen, command_settings, serve_metrics

if TYPE_CHECKING:
    from penpay.settings import Settings

GROUP = "worker"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("reconcile", help="reconcile with the providers periodically")
    parser.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    parser.add_argument("--once", action="store_true", help="one run, then exit")
    add_metrics_listen(parser, default="off; penpay_alerts_total (a failed provider read is an alert)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from workers.alert_metrics import count_alerts

    count_alerts()
    if not args.once:
        serve_metrics(args.metrics_listen)
    event_loop.run(_run(command_settings(args), args))
    return 0


async def _run(settings: Settings, args: argparse.Namespace) -> None:
    from penpay.bootstrap import bootstrap
    from penpay.wiring.daemon import run_until_signalled
    from penpay.wiring.reconcile_worker import build_reconcile_worker

    core = bootstrap(settings, pool_size=5)
    daemon = build_reconcile_worker(core)
    if not args.once:
        await run_until_signalled(daemon, core)
        return
    try:
        assert daemon.worker is not None
        await daemon.worker.run_once()
    finally:
        await daemon.close()
        await core.close()
