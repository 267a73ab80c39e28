"""The M-Pesa callback endpoints' wiring (`penpay callbacks`, the embedded stack, the saga tests):
Daraja's results and the paybill's C2B validations and confirmations, and Africa's Talking's SMS
delivery reports when PENPAY_SMS_AT_DELIVERY_REPORT_TOKEN is set."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from domain.shared.clock import SystemClock
from mpesa_adapter.callback_server import CallbackServer
from penpay.settings import SettingsError

if TYPE_CHECKING:
    from application.payments.decisions import SagaPolicy
    from application.payments.paybill import PaybillDeposits
    from application.review.paybill_refund import SuspenseRefunds
    from mpesa_adapter.types import C2BUrlsRegistered
    from penpay.bootstrap import Core
    from penpay.settings import Settings


def build_callback_server(
    core: Core,
    *,
    host: str | None = None,
    port: int | None = None,
    paybill: PaybillDeposits | None = None,
    refunds: SuspenseRefunds | None = None,
    saga_policy: SagaPolicy | None = None,
) -> CallbackServer:
    """Listening where PENPAY_MPESA_CALLBACK_BASE_URL points unless host/port are given; the paybill
    and suspense-refund use cases from the core unless handed in (not started); `saga_policy`: the
    running saga's when it is not the settings' (the tests' faster timings)."""
    from application.review.paybill_refund import SuspenseRefunds
    from mpesa_adapter.config import CallbackServerConfig
    from penpay.bootstrap import callback_inbox, paybill_deposits
    from sms_adapter.delivery_reports import DeliveryReports

    s = core.settings
    secret = s.mpesa_callback_secret.get_secret_value()
    if not secret:
        raise SettingsError("PENPAY_MPESA_CALLBACK_SECRET: unset; expected the secret path segment")
    url = urlsplit(s.mpesa_callback_base_url)
    report_token = s.sms_at_delivery_report_token.get_secret_value()
    return CallbackServer(
        CallbackServerConfig.from_strings(secret, s.mpesa_allowed_ips, s.trusted_proxies),
        callback_inbox(core, saga_policy),
        host=host or url.hostname or "127.0.0.1",
        port=(url.port or 80) if port is None else port,
        extra_routes=DeliveryReports(report_token).routes() if report_token else [],
        paybill=paybill if paybill is not None else paybill_deposits(core),
        # Reversal results only record what M-Pesa answered; no Daraja client is needed here.
        refunds=refunds if refunds is not None else SuspenseRefunds(unit_of_work=core.unit_of_work),
        clock=core.clock,  # when each answer arrived
    )


async def register_paybill_urls(settings: Settings) -> C2BUrlsRegistered:
    """C2B Register URL: tell Daraja where the paybill's validations and confirmations go (what an
    operator does once, `penpay mpesa register-urls`; the embedded stack at every start)."""
    from penpay.bootstrap import daraja_client

    closers: list[Callable[[], Awaitable[object]]] = []
    try:
        # The shared token cache: a token of its own would revoke the one the workers use.
        # C2B Register URL sends no STK Timestamp: the system clock is never read here.
        return await daraja_client(settings, closers.append, clock=SystemClock()).register_c2b_urls()
    finally:
        for close in closers:
            await close()
