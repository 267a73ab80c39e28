"""The one logging set-up of every `penpay` process: structured JSON with secrets removed.

configure_logging() routes structlog and the standard library's logging through one pipeline
ending in a JSON renderer; redact_secrets() runs last before rendering and replaces:
- values under sensitive key names (password, token, secret, authorization, code/otp/pin,
  SecurityCredential, api keys, cookies, ... at any nesting depth);
- JWTs and "Bearer ..." credentials found inside any string value, whatever its key;
- every registered secret value (register_secret: the Deriv agent's and customers' tokens, each
  `SecretStr` setting) wherever it appears inside a string, e.g. a frame a library prints;
- Kenyan phone numbers (2547..., +2547..., 07...), masked to their first and last digits.
Wire-level loggers that would print frames, SQL parameters or raw request heads (websockets,
sqlalchemy.engine, aiomysql, asyncmy, aiohttp.server) are held at WARNING so a DEBUG root level cannot
leak what they carry; what they still say at WARNING goes through the same redaction.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "[REDACTED]"
MASK = REDACTED  # the name deriv_gateway's loggers used

_SENSITIVE_KEY = re.compile(
    r"(pass(word|wd|phrase)?$|^pwd$|secret|token|authori[sz]ation|^authorize$|api_?key|cookie|"
    r"^code$|verification_code|otp|(^|_)pin$|mpesa_pin|security_?credential|private_?key|"
    r"credential|^refresh$|^session$|^jwt$|national_id|tax_identification_number|nonce)",
    re.IGNORECASE,
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
# Kenyan mobile numbers as Daraja and our domain write them: 2547XXXXXXXX / 2541XXXXXXXX, with or
# without "+", and the national 07XXXXXXXX / 01XXXXXXXX. Not inside a longer run of digits.
_PHONE = re.compile(r"(?<![\d*])(\+?254[17]\d{8}|0[17]\d{8})(?!\d)")
# Daraja's CheckoutRequestID ends with the subscriber's number without 254 (`ws_CO_` + DDMMYYYYHHmmss
# + 3-digit ms + 9 digits): its last 3 digits stay, so a line can still be told apart and searched.
_CHECKOUT_ID = re.compile(r"(ws_CO_\d{17})\d{6}(\d{3})(?!\d)")
_QUIET_LOGGERS = (
    "websockets",  # DEBUG prints every frame: `authorize` carries a Deriv token
    "sqlalchemy.engine",  # INFO prints statements' parameters
    "aiomysql",
    "asyncmy",
    "aiosqlite",
    "asyncio",
    "urllib3",
    "alembic.runtime.plugins",  # INFO lists each autogenerate plugin on every start: noise
    "aiohttp.server",  # "Error handling request" quotes the raw request head (cookies, tokens)
    "grpc",
    "hpack",
)
_MIN_SECRET = 4  # shorter values would mask ordinary words

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask `value` wherever a log line would contain it, from now on (values under 4 chars ignored)."""
    if value and len(value) >= _MIN_SECRET:
        with _lock:
            _secrets.add(value)


def forget_secret(value: str | None) -> None:
    if value:
        with _lock:
            _secrets.discard(value)


def mask_phone(number: str) -> str:
    """2547****5678 -> keeps what tells a support agent which line it was, not the number."""
    keep_head = 5 if number.startswith("+") else 4
    return number[:keep_head] + "*" * (len(number) - keep_head - 3) + number[-3:]


def is_sensitive_key(key: object) -> bool:
    return isinstance(key, str) and _SENSITIVE_KEY.search(key) is not None


def scrub_text(text: str) -> str:
    if _secrets:
        # longest first: a secret that contains another is masked whole
        for secret in sorted(tuple(_secrets), key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
    text = _JWT.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _CHECKOUT_ID.sub(r"\1******\2", text)
    return _PHONE.sub(lambda m: mask_phone(m.group(1)), text)


def scrub(value: Any, depth: int = 0) -> Any:
    if depth > 8:
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {k: REDACTED if is_sensitive_key(k) else scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [scrub(v, depth + 1) for v in value]
    if isinstance(value, bytes):
        return REDACTED
    if isinstance(value, int) and not isinstance(value, bool) and _PHONE.fullmatch(str(value)):
        return mask_phone(str(value))  # a phone number logged as an integer (Daraja's PartyA)
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: the last step before rendering."""
    return {
        k: REDACTED if (is_sensitive_key(k) and k != "event") else scrub(v) for k, v in event_dict.items()
    }


def configure_logging(level: int | str = "INFO", stream: TextIO | None = None) -> None:
    """JSON logs on `stream` (stderr) for structlog and stdlib loggers, secrets redacted.

    `penpay` commands call it through penpay.logging_setup (level and secrets from the settings).
    """
    if isinstance(level, str):
        level = level.upper()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            # A line below the level is dropped before anything is stamped or formatted (most of a
            # payment's lines are INFO, and production runs at WARNING: they cost CPU for nothing)
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name("penpay-json")
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == "penpay-json"]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
}


def _dropped_by_level(stdlib_logger: logging.Logger, method: str) -> bool:
    """Whether the event would reach logging only to be dropped by its level: under
    configure_logging's pipeline (its last processor hands the event to logging) and the logger
    not enabled for that level. Any other pipeline (a test capturing events) sees every event.
    Checked first, so a line that is never written costs no scrubbing (one per transfer)."""
    if stdlib_logger.isEnabledFor(_LEVELS[method]):
        return False
    processors = structlog.get_config()["processors"]
    return bool(processors) and processors[-1] is structlog.stdlib.ProcessorFormatter.wrap_for_formatter


class RedactingLogger:
    """Scrubs every event before it reaches structlog, whatever processors are configured (a
    library or test that never called configure_logging still logs no token)."""

    def __init__(self, logger: Any, name: str = "") -> None:
        self._logger = logger
        self._name = name
        self._stdlib = logging.getLogger(name or None)

    def bind(self, **kw: Any) -> RedactingLogger:
        return RedactingLogger(self._logger.bind(**redact_secrets(None, "", dict(kw))), self._name)

    def _log(self, method: str, event: str, **kw: Any) -> None:
        if _dropped_by_level(self._stdlib, method):
            return
        getattr(self._logger, method)(scrub_text(event), **redact_secrets(None, method, dict(kw)))

    def debug(self, event: str, **kw: Any) -> None:
        self._log("debug", event, **kw)

    def info(self, event: str, **kw: Any) -> None:
        self._log("info", event, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._log("warning", event, **kw)

    def error(self, event: str, **kw: Any) -> None:
        self._log("error", event, **kw)

    def exception(self, event: str, **kw: Any) -> None:
        self._log("exception", event, **kw)


def get_logger(name: str) -> RedactingLogger:
    return RedactingLogger(structlog.get_logger(name), name)
