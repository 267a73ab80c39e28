"""Structured JSON logs (structlog) with secrets removed before anything is written.

configure_logging() routes structlog and the standard library's logging through one pipeline
ending in a JSON renderer; redact_secrets() runs last before rendering and replaces:
- values under sensitive key names (password, token, secret, authorization, code/otp/pin,
  SecurityCredential, api keys, cookies, ... at any nesting depth);
- JWTs and "Bearer ..." credentials found inside any string value, whatever its key.
Wire-level loggers that would print frames or SQL parameters (websockets, sqlalchemy.engine,
aiomysql) are held at WARNING so a DEBUG root level cannot leak request bodies.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "[REDACTED]"

_SENSITIVE_KEY = re.compile(
    r"(pass(word|wd|phrase)?$|^pwd$|secret|token|authori[sz]ation|^authorize$|api_?key|cookie|"
    r"^code$|verification_code|otp|(^|_)pin$|mpesa_pin|security_?credential|private_?key|"
    r"credential|^refresh$|^session$|^jwt$|national_id|tax_identification_number)",
    re.IGNORECASE,
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_QUIET_LOGGERS = ("websockets", "sqlalchemy.engine", "aiomysql", "aiosqlite", "asyncio", "urllib3")


def is_sensitive_key(key: object) -> bool:
    return isinstance(key, str) and _SENSITIVE_KEY.search(key) is not None


def scrub_text(text: str) -> str:
    text = _JWT.sub(REDACTED, text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


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
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog processor: the last step before rendering."""
    return {k: REDACTED if is_sensitive_key(k) else scrub(v) for k, v in event_dict.items()}


def configure_logging(level: int | str = "INFO", stream: TextIO | None = None) -> None:
    """JSON logs on `stream` (stderr) for structlog and stdlib loggers, secrets redacted."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
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
