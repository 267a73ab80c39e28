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
from typing import TYPE_CHECKING

from penpay import event_loop
from penpay.cli_args import add_listen, command_settings

if TYPE_CHECKING:
    from penpay.settings import Settings


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
    return event_loop.run(_run(command_settings(args), args))


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    from penpay.bootstrap import bootstrap
    from penpay.cli_args import split_host_port
    from penpay.wiring.callbacks import build_callback_server
    from workers.host import stop_on_signals

    host, port = split_host_port(args.listen) if args.listen else (None, None)
    core = bootstrap(settings, pool_size=5)
    try:
        server = build_callback_server(core, host=host, port=port)
        stop = asyncio.Event()
        stop_on_signals(stop)
        await server.start()
        try:
            print(f"M-Pesa callbacks on {server.base_url}", flush=True)
            if args.register_urls:
                from penpay.commands.mpesa import register_urls

                # A Daraja that cannot be reached now must not stop the callbacks: say so, serve on.
                if await register_urls() != 0:
                    print(
                        "penpay callbacks: the paybill URLs are not registered; "
                        "run penpay mpesa register-urls"
                    )
            await stop.wait()
        finally:
            await server.stop()
    finally:
        await core.close()
    return 0
