"""`penpay callbacks`: serve the M-Pesa (Daraja) callback endpoints until SIGTERM.

Listens on the host:port of PENPAY_MPESA_CALLBACK_BASE_URL; the path secret is
PENPAY_MPESA_CALLBACK_SECRET and only PENPAY_MPESA_ALLOWED_IPS may call. Every callback is
checked and stored (mpesa_adapter.callback_store); the saga worker acts on it. With
PENPAY_SMS_AT_DELIVERY_REPORT_TOKEN set it also takes Africa's Talking's SMS delivery reports
(sms_adapter/delivery_reports.py) under /sms/delivery-reports/<token>. The paybill's C2B
validation and confirmation URLs are served too (register them with `penpay mpesa register-urls`).
"""

from __future__ import annotations

import argparse
import asyncio

from penpay.cli_args import add_listen


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("callbacks", help="serve the M-Pesa callback endpoints")
    parser.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    add_listen(parser, what="serve the callbacks here", default="from PENPAY_MPESA_CALLBACK_BASE_URL")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default PENPAY_LOG_LEVEL, INFO)")
    parser.add_argument(
        "--register-urls",
        action="store_true",
        help="once listening, register the paybill's C2B URLs with Daraja (penpay mpesa register-urls)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from workers.alert_metrics import count_alerts

    count_alerts()  # foreign Daraja results are alerted here (the log line is what leaves this process)
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    from application.review.paybill_refund import SuspenseRefunds
    from mpesa_adapter.callback_server import CallbackServer
    from mpesa_adapter.callback_store import SqlCallbackInbox
    from mpesa_adapter.config import CallbackServerConfig
    from penpay.bootstrap import bootstrap, paybill_deposits
    from penpay.settings import get_settings
    from sms_adapter.delivery_reports import DeliveryReports
    from workers.host import stop_on_signals

    settings = get_settings()
    if args.database_url:
        settings = settings.model_copy(update={"database_url": args.database_url})
    secret = settings.mpesa_callback_secret.get_secret_value()
    if not secret:
        print("penpay callbacks needs PENPAY_MPESA_CALLBACK_SECRET (the secret path segment)")
        return 2
    if args.listen:
        host, _, port = args.listen.rpartition(":")
    else:
        url = urlsplit(settings.mpesa_callback_base_url)
        host, port = url.hostname or "127.0.0.1", str(url.port or 80)
    report_token = settings.sms_at_delivery_report_token.get_secret_value()
    reports = DeliveryReports(report_token).routes() if report_token else []
    core = bootstrap(settings, pool_size=5)
    server = CallbackServer(
        CallbackServerConfig.from_strings(secret, settings.mpesa_allowed_ips, settings.trusted_proxies),
        SqlCallbackInbox(core.engine),
        host=host,
        port=int(port),
        extra_routes=reports,
        paybill=paybill_deposits(core),
        refunds=SuspenseRefunds(unit_of_work=core.unit_of_work),
    )
    stop = asyncio.Event()
    stop_on_signals(stop)
    await server.start()
    print(f"M-Pesa callbacks on {server.base_url}", flush=True)
    if args.register_urls:
        from penpay.commands.mpesa import register_urls

        # A Daraja that cannot be reached now must not stop the callbacks: say so and serve on.
        if await register_urls() != 0:
            print("penpay callbacks: the paybill URLs are not registered; run penpay mpesa register-urls")
    try:
        await stop.wait()
    finally:
        await server.stop()
        await core.close()
    return 0
