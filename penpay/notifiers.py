"""The notifier the settings name: SMS by Africa's Talking, email by SMTP, each behind a
per-recipient rate limit; and production's refusal to run without both providers.

Outside production a provider left unset is the development sink (messages kept in memory,
readable through the dev-only DevService), so `penpay api` in development still works offline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from application.identity.ports import Notifier, RateLimiter
from domain.shared.clock import Clock
from penpay.production import Part, refuse_development_values
from penpay.settings import Settings, SettingsError
from security.notify import DevelopmentNotifier, EmailSender, SmsSender, SplitNotifier
from security.notify_limits import RecipientLimitedNotifier


def missing_provider(settings: Settings) -> str | None:
    """The one line naming the first provider setting production lacks, or None."""
    try:
        refuse_development_values(settings, Part.NOTIFY)
    except SettingsError as problem:
        return str(problem)
    return None


def require_providers(settings: Settings) -> None:
    refuse_development_values(settings, Part.NOTIFY)


@dataclass
class BuiltNotifier:
    notifier: Notifier
    dev_sink: DevelopmentNotifier | None  # where unset providers' messages went (never in production)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def aclose(self) -> None:
        for close in self.closers:
            await close()


def build_notifier(
    settings: Settings,
    limiter: RateLimiter,
    *,
    clock: Clock,
    dev_sink: DevelopmentNotifier | None = None,
) -> BuiltNotifier:
    require_providers(settings)
    closers: list[Callable[[], Awaitable[None]]] = []
    used_sink: DevelopmentNotifier | None = None
    sms: SmsSender
    email: EmailSender
    if settings.sms_at_username and settings.sms_at_api_key.get_secret_value():
        from sms_adapter.africastalking import AfricasTalkingSms

        at = AfricasTalkingSms(
            username=settings.sms_at_username,
            api_key=settings.sms_at_api_key.get_secret_value(),
            sender_id=settings.sms_at_sender_id,
            base_url=settings.sms_at_base_url,
            timeout=settings.sms_timeout,
        )
        closers.append(at.aclose)
        sms = at
    else:
        sms = used_sink = dev_sink or DevelopmentNotifier(clock=clock)
    if settings.smtp_host:
        from security.notify import SmtpNotifier

        email = SmtpNotifier(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_sender,
            username=settings.smtp_username or None,
            password=settings.smtp_password.get_secret_value() or None,
            starttls=settings.smtp_starttls,
        )
    else:
        email = used_sink = used_sink or dev_sink or DevelopmentNotifier(clock=clock)
    notifier = RecipientLimitedNotifier(
        SplitNotifier(sms=sms, email=email),
        limiter,
        limit=settings.notify_recipient_limit,
        window_seconds=settings.notify_recipient_window,
    )
    return BuiltNotifier(notifier, used_sink, closers)
