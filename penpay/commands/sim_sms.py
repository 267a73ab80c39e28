"""`penpay sim sms`: run the Africa's Talking SMS simulator (with its mailbox) until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from penpay import event_loop
from penpay.cli_args import add_simulator_listen, listen_of

GROUP = "sim"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from sms_adapter.simulator import DEFAULT_API_KEY, DEFAULT_USERNAME

    p = subparsers.add_parser(
        "sms",
        help="run an Africa's Talking SMS simulator (POST /version1/messaging, mailbox)",
        description=(
            "Answers POST /version1/messaging as Africa's Talking does and keeps every message in a "
            "mailbox: GET /__control__/messages?to=+2547... (newest first). Point PENPAY_SMS_AT_BASE_URL "
            "at it with PENPAY_SMS_AT_USERNAME / PENPAY_SMS_AT_API_KEY set to --username / --api-key."
        ),
    )
    add_simulator_listen(p, default_port=8769, what="serve the messaging API and its mailbox here")
    p.add_argument("--username", default=DEFAULT_USERNAME, help="the username it requires")
    p.add_argument("--api-key", default=DEFAULT_API_KEY, help="the apiKey header it requires")
    p.add_argument("--delivery-report-url", help="POST a delivery report here per accepted message")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default PENPAY_LOG_LEVEL, INFO)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    event_loop.run(_serve(args))
    return 0


async def _serve(args: argparse.Namespace) -> None:
    from sms_adapter.simulator import SmsSimulator

    host, port = listen_of(args)
    simulator = SmsSimulator(
        host=host,
        port=port,
        username=args.username,
        api_key=args.api_key,
        delivery_report_url=args.delivery_report_url,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with simulator:
        print(f"penpay sim sms listening on {simulator.base_url}", flush=True)
        await stop.wait()
