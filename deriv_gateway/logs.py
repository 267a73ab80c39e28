"""structlog set-up with token redaction.

Tokens arrive in gRPC request fields and go out in `authorize` frames; none may reach a log line.
Two layers: any event key that looks sensitive is masked, and every registered secret value is
replaced wherever it appears inside a logged string.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import MutableMapping
from typing import Any

import structlog

SENSITIVE_KEY = re.compile(r"token$|tokens$|authorize|verification_code|password|secret", re.IGNORECASE)
MASK = "<redacted>"

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a secret value so it is masked anywhere it would be logged (min 4 chars)."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def forget_secret(value: str | None) -> None:
    if value:
        with _lock:
            _secrets.discard(value)


def scrub(value: Any) -> Any:
    if isinstance(value, str):
        for secret in tuple(_secrets):
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {k: MASK if SENSITIVE_KEY.search(str(k)) else scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub(v) for v in value)
    return value


def redact_processor(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if SENSITIVE_KEY.search(key) and key != "event":
            event[key] = MASK
        else:
            event[key] = scrub(event[key])
    return event


def configure(level: str = "INFO", json_output: bool = False) -> None:
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    renderer: Any = structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=True,
    )


class RedactingLogger:
    """Scrubs every event before it reaches structlog, whatever processors the application configured."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def bind(self, **kw: Any) -> RedactingLogger:
        return RedactingLogger(self._logger.bind(**dict(redact_processor(None, "", dict(kw)))))

    def _log(self, method: str, event: str, **kw: Any) -> None:
        clean = redact_processor(None, method, dict(kw))
        getattr(self._logger, method)(scrub(event), **clean)

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
    return RedactingLogger(structlog.get_logger(name))
