"""Notification delivery (application.identity.ports.Notifier): SMTP for email, a development
sink that keeps messages in memory and appends them to a JSON-lines file, and SplitNotifier, which
sends each channel through its own provider (SMS: sms_adapter.africastalking; the wiring is
penpay/notifiers.py).

SMTP uses the standard library's smtplib in a worker thread (no extra dependency), with STARTTLS
when asked. SmtpNotifier refuses SMS rather than dropping it silently.
Message bodies hold one-time codes: they are never logged.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import structlog

from domain.shared.clock import Clock, SystemClock

log = structlog.get_logger("penpay.notify")


@dataclass(frozen=True, slots=True, repr=False)
class SentMessage:
    channel: str  # "email" or "sms"
    to: str
    subject: str
    body: str
    sent_at: datetime

    def __repr__(self) -> str:
        return f"SentMessage(channel={self.channel!r}, subject={self.subject!r}, body='***')"


class DevelopmentNotifier:
    """Keeps every message (tests read `sent`); optionally appends each to a JSONL file. Each is
    stamped by `clock` (the composition root hands in the process's)."""

    def __init__(self, path: Path | None = None, *, clock: Clock | None = None) -> None:
        self.sent: list[SentMessage] = []
        self._path = path
        self._clock = clock or SystemClock()

    def _keep(self, message: SentMessage) -> None:
        self.sent.append(message)
        if self._path is not None:
            line = json.dumps(
                {
                    "channel": message.channel,
                    "to": message.to,
                    "subject": message.subject,
                    "body": message.body,
                    "sent_at": message.sent_at.isoformat(),
                }
            )
            with self._path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
        log.info("notify.dev_sink", channel=message.channel)

    async def send_email(self, *, to: str, subject: str, body: str) -> None:
        self._keep(SentMessage("email", to, subject, body, self._clock.now()))

    async def send_sms(self, *, to: str, body: str) -> None:
        self._keep(SentMessage("sms", to, "", body, self._clock.now()))

    def latest(self, channel: str, to: str) -> SentMessage:
        return next(m for m in reversed(self.sent) if m.channel == channel and m.to == to)


class SmtpNotifier:
    def __init__(
        self,
        *,
        host: str,
        port: int = 587,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout: float = 10.0,
    ) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._username, self._password = username, password
        self._starttls, self._timeout = starttls, timeout

    def __repr__(self) -> str:
        return f"SmtpNotifier(host={self._host!r}, port={self._port}, sender={self._sender!r})"

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
            if self._starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self._username and self._password:
                smtp.login(self._username, self._password)
            smtp.send_message(message)

    async def send_email(self, *, to: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self._sender, to, subject
        message.set_content(body)
        await asyncio.to_thread(self._send, message)
        log.info("notify.email_sent")

    async def send_sms(self, *, to: str, body: str) -> None:
        raise NotImplementedError("SMTP sends email only: route SMS through SplitNotifier")


class SmsSender(Protocol):
    async def send_sms(self, *, to: str, body: str) -> None: ...


class EmailSender(Protocol):
    async def send_email(self, *, to: str, subject: str, body: str) -> None: ...


class SplitNotifier:
    """One provider per channel (Africa's Talking for SMS, SMTP for email)."""

    def __init__(self, *, sms: SmsSender, email: EmailSender) -> None:
        self.sms, self.email = sms, email

    def __repr__(self) -> str:
        return f"SplitNotifier(sms={self.sms!r}, email={self.email!r})"

    async def send_sms(self, *, to: str, body: str) -> None:
        await self.sms.send_sms(to=to, body=body)

    async def send_email(self, *, to: str, subject: str, body: str) -> None:
        await self.email.send_email(to=to, subject=subject, body=body)
