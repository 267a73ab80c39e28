"""`penpay worker audit`: the background audit sealer (workers/audit_sealing.py), the continuous
auditor (workers/auditor.py) and the FloatLow consumer (workers/float_low.py), until SIGTERM.

Every PENPAY_AUDIT_INTERVAL seconds the auditor checks the ledger, the audit chain, the floats
against Deriv (the gateway's GetBalance) and M-Pesa (the latest Account Balance result; it asks for
a new one after each run unless --no-ask-balance) and the transactions' time limits, stores its
verdicts (OpsService.GetAuditorVerdicts), sets Prometheus gauges and raises alerts. With Redis it
also reads FloatLow events (group "float-low-alerts"); without Redis `penpay worker saga` does.
`--once` runs one audit, prints the verdicts and exits 1 when a check failed (0 otherwise).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from penpay import event_loop
from penpay.cli_args import add_metrics_listen, add_stream_options, command_settings, serve_metrics

if TYPE_CHECKING:
    from penpay.settings import Settings

GROUP = "worker"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("audit", help="run the continuous auditor and the FloatLow alerts")
    parser.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    parser.add_argument(
        "--once", action="store_true", help="one audit, print the verdicts, exit 1 on a failure"
    )
    parser.add_argument("--no-ask-balance", action="store_true", help="never ask M-Pesa for its balance")
    parser.add_argument(
        "--no-deriv-balance", action="store_true", help="never ask the gateway for the balance"
    )
    add_stream_options(parser)
    add_metrics_listen(parser, default="off; the audit gauges and penpay_alerts_total")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default PENPAY_LOG_LEVEL, INFO)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from workers.alert_metrics import count_alerts

    count_alerts()
    if not args.once:
        serve_metrics(args.metrics_listen)
    return event_loop.run(_run(command_settings(args), args))


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    from penpay.bootstrap import bootstrap
    from penpay.wiring.auditor import build_audit_worker
    from penpay.wiring.daemon import run_until_signalled

    core = bootstrap(settings, pool_size=3)
    worker = build_audit_worker(
        core,
        deriv_balance=not args.no_deriv_balance,
        ask_mpesa_balance=not (args.no_ask_balance or args.once),
        float_low=not args.once and bool(settings.redis_url),
        stream_prefix=args.stream_prefix,
        claim_idle_ms=args.claim_idle_ms,
    )
    if not args.once:
        await run_until_signalled(worker, core)
        return 0
    try:
        assert worker.auditor is not None
        verdicts = await worker.auditor.run_once()
    finally:
        await worker.close()
        await core.close()
    for verdict in verdicts:
        print(f"{verdict.status:<8} {verdict.check:<20} {verdict.summary}")
    return 1 if any(v.failed for v in verdicts) else 0
