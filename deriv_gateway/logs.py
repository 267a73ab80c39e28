"""The gateway's loggers: security/logs.py's, which every process shares (one set-up, one redaction).

Kept as a module so the gateway's imports read as before; `configure` is the shared set-up.
"""

from __future__ import annotations

from security.logs import (
    MASK,
    RedactingLogger,
    forget_secret,
    get_logger,
    redact_secrets,
    register_secret,
    scrub,
)
from security.logs import configure_logging as configure

redact_processor = redact_secrets

__all__ = [
    "MASK",
    "RedactingLogger",
    "configure",
    "forget_secret",
    "get_logger",
    "redact_processor",
    "register_secret",
    "scrub",
]
