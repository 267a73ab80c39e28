"""`penpay mpesa register-urls`: register the paybill's C2B ValidationURL and ConfirmationURL.

Daraja's C2B Register URL for PENPAY_MPESA_C2B_SHORTCODE (default PENPAY_MPESA_SHORTCODE), with
ResponseType PENPAY_MPESA_C2B_RESPONSE_TYPE and the URLs under PENPAY_MPESA_CALLBACK_BASE_URL
(`/payments/paybill/validate/<secret>`, `/payments/paybill/confirm/<secret>`, served by
`penpay callbacks`). Moves no money, so it is safe to repeat; in production Safaricom keeps the first
registration of a shortcode until it is deleted on the Daraja portal.
"""

from __future__ import annotations

import argparse

from penpay import event_loop


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "mpesa",
        help="M-Pesa (Daraja) set-up tasks",
        description="M-Pesa (Daraja) set-up tasks.",
    )
    sub = parser.add_subparsers(dest="mpesa_command", required=True, metavar="ACTION")
    urls = sub.add_parser(
        "register-urls",
        help="register the paybill's C2B validation and confirmation URLs with Daraja",
        description="C2B Register URL: tell Daraja where to ask about, and confirm, paybill payments.",
    )
    urls.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return event_loop.run(register_urls())


async def register_urls() -> int:
    from mpesa_adapter.errors import MpesaAdapterError
    from penpay.settings import get_settings
    from penpay.wiring.callbacks import register_paybill_urls

    settings = get_settings()
    if not settings.mpesa_callback_secret.get_secret_value():
        print("penpay mpesa register-urls needs PENPAY_MPESA_CALLBACK_SECRET (the secret path segment)")
        return 2
    try:
        registered = await register_paybill_urls(settings)
    except MpesaAdapterError as exc:
        print(f"penpay: Register URL refused: {exc}")
        return 1
    base = settings.mpesa_callback_base_url.rstrip("/")
    print(
        f"registered paybill {registered.shortcode} (ResponseType {registered.response_type}): "
        f"{base}/payments/paybill/validate/***, {base}/payments/paybill/confirm/***"
    )
    return 0
