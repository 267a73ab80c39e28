"""The continuous auditor's wiring (`penpay worker audit`, the embedded stack): the background audit
sealer (workers/audit_sealing.py, the only sealer when PENPAY_AUDIT_SEALER=background), the auditor
with its provider balance reads, and with Redis the FloatLow alerts (without Redis the saga worker
reads them from its in-process bus)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from penpay.wiring.daemon import Daemon
from workers.audit_sealing import BackgroundSealer
from workers.auditor import Auditor, AuditorConfig

if TYPE_CHECKING:
    from penpay.bootstrap import Core
    from penpay.settings import Settings
    from workers.bus import MessageBus


def auditor_config(settings: Settings) -> AuditorConfig:
    from domain.wallet.money import Currency

    return AuditorConfig(
        stale_after=timedelta(seconds=settings.audit_stale_after),
        float_tolerance=(
            (Currency.USD, settings.audit_float_tolerance_usd_cents),
            (Currency.KES, settings.audit_float_tolerance_kes_cents),
        ),
        retention=timedelta(days=settings.audit_verdict_retention_days),
        interval=settings.audit_interval,
    )


@dataclass
class AuditWorker(Daemon):
    auditor: Auditor | None = None
    sealer: BackgroundSealer | None = None


def build_audit_worker(
    core: Core,
    *,
    deriv_balance: bool = True,
    ask_mpesa_balance: bool = True,
    float_low: bool | None = None,
    bus: MessageBus | None = None,
    stream_prefix: str = "",
    **consumer_options: Any,
) -> AuditWorker:
    """deriv_balance: read the agent's balance from the gateway; ask_mpesa_balance: ask Daraja for
    an Account Balance after each run; float_low (default: with Redis) the FloatLow consumer."""
    from workers.float_low import float_low_consumer

    s = core.settings
    worker = AuditWorker()
    # Always run, whichever PENPAY_AUDIT_SEALER says: it also chains the records of a process that
    # died between its commit and its own seal.
    worker.sealer = BackgroundSealer(core.engine, interval=s.audit_seal_interval)
    worker.loops.append(worker.sealer.run)
    deriv_read = None
    if deriv_balance and s.gateway_addr:
        from deriv_gateway.channel import gateway_channel
        from deriv_gateway.payments_client import GatewayDerivBalance

        channel = gateway_channel(s.gateway_addr)
        worker.closers.append(channel.close)
        deriv_read = GatewayDerivBalance(channel, timeout=s.gateway_request_timeout).agent_balance
    ask = None
    shortcodes: tuple[str, ...] = ()
    if ask_mpesa_balance:
        from mpesa_adapter.balance_queries import ask_account_balances
        from penpay.bootstrap import callback_inbox, daraja_client

        daraja = daraja_client(s, worker.closers.append, clock=core.clock)
        inbox = callback_inbox(core)

        async def ask() -> object:
            return await ask_account_balances(daraja, inbox, now=core.clock.now())

        shortcodes = daraja.balance_shortcodes

    worker.auditor = Auditor(
        core.engine,
        config=auditor_config(s),
        clock=core.clock,
        deriv_balance=deriv_read,
        ask_mpesa_balance=ask,
        mpesa_shortcodes=shortcodes,
    )
    worker.loops.append(worker.auditor.run)
    if float_low if float_low is not None else bool(s.redis_url):
        if bus is None:
            bus = core.message_bus(stream_prefix=stream_prefix)
        worker.consumers.append(float_low_consumer(bus, core.engine, clock=core.clock, **consumer_options))
    return worker
