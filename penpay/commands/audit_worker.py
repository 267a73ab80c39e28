"""`penpay worker audit`: the continuous auditor (workers/auditor.py) and the FloatLow consumer
(workers/float_low.py), until SIGTERM.

Every PENPAY_AUDIT_INTERVAL seconds the auditor checks the ledger, the audit chain, the floats
against Deriv (the gateway's GetBalance) and M-Pesa (the latest Account Balance result; it asks for
a new one after each run unless --no-ask-balance) and the transactions' time limits, stores its
verdicts (OpsService.GetAuditorVerdicts), sets Prometheus gauges and raises alerts. With Redis it
also reads FloatLow events (group "float-low-alerts"); without Redis `penpay worker saga` does.
`--once` runs one audit, prints the verdicts and exits 1 when a check failed (0 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from penpay.cli_args import add_metrics_listen

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
    parser.add_argument("--stream-prefix", default="", help="Redis key prefix of the streams (default none)")
    parser.add_argument("--claim-idle-ms", type=int, default=60_000, help="XAUTOCLAIM idle threshold")
    add_metrics_listen(parser, default="off; the audit gauges and penpay_alerts_total")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default PENPAY_LOG_LEVEL, INFO)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from workers.alert_metrics import count_alerts

    count_alerts()
    if args.metrics_listen and not args.once:
        from prometheus_client import start_http_server

        host, _, port = args.metrics_listen.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1")
    return asyncio.run(_run(args))


def auditor_config(settings: Any) -> Any:
    from datetime import timedelta

    from domain.wallet.money import Currency
    from workers.auditor import AuditorConfig

    return AuditorConfig(
        stale_after=timedelta(seconds=settings.audit_stale_after),
        float_tolerance=(
            (Currency.USD, settings.audit_float_tolerance_usd_cents),
            (Currency.KES, settings.audit_float_tolerance_kes_cents),
        ),
        retention=timedelta(days=settings.audit_verdict_retention_days),
        interval=settings.audit_interval,
    )


async def _run(args: argparse.Namespace) -> int:
    from penpay.bootstrap import bootstrap, daraja_config, daraja_token_cache
    from penpay.settings import get_settings
    from workers.auditor import Auditor
    from workers.float_low import float_low_consumer
    from workers.host import run_workers, stop_on_signals

    settings = get_settings()
    if args.database_url:
        settings = settings.model_copy(update={"database_url": args.database_url})
    core = bootstrap(settings, pool_size=3)
    closers: list[Callable[[], Awaitable[object]]] = [core.close]
    try:
        deriv_balance = None
        if not args.no_deriv_balance and settings.gateway_addr:
            from deriv_gateway.channel import gateway_channel
            from deriv_gateway.payments_client import GatewayDerivBalance

            channel = gateway_channel(settings.gateway_addr)
            closers.append(channel.close)
            deriv_balance = GatewayDerivBalance(
                channel, timeout=settings.gateway_request_timeout
            ).agent_balance
        ask = None
        if not args.no_ask_balance and not args.once:
            from mpesa_adapter.balance_queries import ask_account_balance
            from mpesa_adapter.callback_store import SqlCallbackInbox
            from mpesa_adapter.client import DarajaClient

            config = daraja_config(settings)
            tokens = daraja_token_cache(settings, config)
            daraja = DarajaClient(config, token_cache=tokens)
            closers.append(daraja.close)
            if tokens is not None:
                closers.append(tokens.close)
            inbox = SqlCallbackInbox(core.engine)

            async def ask() -> object:
                return await ask_account_balance(daraja, inbox)

        auditor = Auditor(
            core.engine, config=auditor_config(settings), deriv_balance=deriv_balance, ask_mpesa_balance=ask
        )
        if args.once:
            verdicts = await auditor.run_once()
            for verdict in verdicts:
                print(f"{verdict.status:<8} {verdict.check:<20} {verdict.summary}")
            return 1 if any(v.failed for v in verdicts) else 0
        stop = asyncio.Event()
        stop_on_signals(stop)
        consumers = []
        if settings.redis_url:
            bus = core.message_bus(stream_prefix=args.stream_prefix)
            consumers.append(float_low_consumer(bus, core.engine, claim_idle_ms=args.claim_idle_ms))
        await asyncio.gather(auditor.run(stop), run_workers(stop, consumers=consumers))
        return 0
    finally:
        for close in reversed(closers):
            await close()
