"""The payment notices' wiring (`penpay worker notify`; without Redis the saga worker runs them
beside its relay, on the in-process bus): one consumer of the status changes for SMS and email."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from penpay.wiring.daemon import Daemon

if TYPE_CHECKING:
    from application.identity.ports import Notifier
    from penpay.bootstrap import Core
    from workers.bus import MessageBus


def build_notify_worker(
    core: Core,
    *,
    bus: MessageBus | None = None,
    stream_prefix: str = "",
    notifier: Notifier | None = None,
    **consumer_options: Any,
) -> Daemon:
    """The notice consumer; the notifier from settings (penpay/notifiers.py) unless handed in
    (the embedded stack hands in its API's, whose development sink the demo reads)."""
    from workers.notifications import notification_consumers

    settings = core.settings
    daemon = Daemon()
    if notifier is None:
        from penpay.notifiers import build_notifier
        from security.rate_limit import rate_limiter_from_url

        limiter = rate_limiter_from_url(settings.redis_url, prefix=settings.rate_limit_prefix)
        if hasattr(limiter, "aclose"):
            daemon.closers.append(limiter.aclose)
        # MissingSecret in production without providers
        built = build_notifier(settings, limiter, clock=core.clock)
        daemon.closers.append(built.aclose)
        notifier = built.notifier
    if bus is None:
        bus = core.message_bus(stream_prefix=stream_prefix)
    daemon.consumers += notification_consumers(
        bus, core.engine, notifier, cipher=core.pii, clock=core.clock, **consumer_options
    )
    return daemon
