"""The periodic reconciliation's wiring (`penpay worker reconcile`): reconciliation with the
providers (penpay/reconcile/wiring.py) run every PENPAY_RECONCILE_INTERVAL seconds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from penpay.wiring.daemon import Daemon
from workers.reconciliation import ReconcileWorker

if TYPE_CHECKING:
    from penpay.bootstrap import Core
    from penpay.reconcile.wiring import Reconciliation


@dataclass
class ReconcileDaemon(Daemon):
    worker: ReconcileWorker | None = None


def build_reconcile_worker(core: Core, *, reconciliation: Reconciliation | None = None) -> ReconcileDaemon:
    """Runs from the cursor, never further back than M-Pesa keeps pulled transactions (less five
    minutes, so a run's start is still listed when its request arrives)."""
    from mpesa_adapter.pull_transactions import PULL_WINDOW
    from penpay.reconcile.wiring import reconciliation as build_reconciliation

    s = core.settings
    daemon = ReconcileDaemon()
    if reconciliation is None:
        reconciliation = build_reconciliation(core)
        daemon.closers.append(reconciliation.close)
    daemon.worker = ReconcileWorker(
        reconciliation.reconciler,
        reconciliation.store,
        clock=core.clock,
        reach=PULL_WINDOW - timedelta(minutes=5),
        lag=timedelta(seconds=s.reconcile_lag),
        interval=s.reconcile_interval,
    )
    daemon.loops.append(daemon.worker.run)
    return daemon
