"""`penpay worker reconcile`: reconcile with the providers every PENPAY_RECONCILE_INTERVAL seconds.

Each run covers what the last successful one did not: from the cursor (the first time, and never
further back than M-Pesa keeps pulled transactions, 48 hours) to PENPAY_RECONCILE_LAG seconds ago. A
failed run moves no cursor: the next run covers its window again.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import timedelta

from penpay.cli_args import add_metrics_listen

GROUP = "worker"
log = logging.getLogger("penpay.reconcile")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("reconcile", help="reconcile with the providers periodically")
    parser.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    parser.add_argument("--once", action="store_true", help="one run, then exit")
    add_metrics_listen(parser, default="off; penpay_alerts_total (a failed provider read is an alert)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from workers.alert_metrics import count_alerts

    count_alerts()
    if args.metrics_listen and not args.once:
        from prometheus_client import start_http_server

        host, _, port = args.metrics_listen.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1")
    asyncio.run(_run(args))
    return 0


async def _run(args: argparse.Namespace) -> None:
    from application.alerts import raise_alert
    from application.reconciliation.ports import MPESA_C2B
    from mpesa_adapter.pull_transactions import PULL_WINDOW
    from penpay.bootstrap import bootstrap
    from penpay.reconcile.wiring import reconciliation
    from penpay.settings import get_settings
    from workers.host import stop_on_signals

    settings = get_settings()
    if args.database_url:
        settings = settings.model_copy(update={"database_url": args.database_url})
    core = bootstrap(settings, pool_size=5)
    wired = reconciliation(core)
    stop = asyncio.Event()
    stop_on_signals(stop)
    try:
        while not stop.is_set():
            now = core.clock.now()
            oldest = now - PULL_WINDOW + timedelta(minutes=5)
            cursor = await wired.store.cursor(MPESA_C2B)
            start = cursor or oldest
            if start < oldest:
                raise_alert(
                    "reconciliation_gap",
                    f"reconciled only to {start.isoformat()}: M-Pesa no longer lists what came before "
                    f"{oldest.isoformat()}; that part needs its statement",
                )
                start = oldest
            end = now - timedelta(seconds=settings.reconcile_lag)
            if end > start:
                report = await wired.reconciler.run(start, end, now=now, trigger="worker")
                log.info(
                    "reconcile.run run_id=%s status=%s unexplained=%d",
                    report.run_id,
                    report.status,
                    report.unexplained,
                )
            if args.once:
                return
            try:
                await asyncio.wait_for(stop.wait(), timeout=settings.reconcile_interval)
            except TimeoutError:
                pass
    finally:
        await wired.close()
        await core.close()
