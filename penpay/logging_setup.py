"""The logging set-up every `penpay` command gets from penpay/cli.py: security/logs.py's JSON
pipeline, with every secret setting registered so its value is masked wherever it would appear
(a library's message, an exception's text).

The level: the command's --log-level, else PENPAY_LOG_LEVEL when set, else the command's own
default (`penpay demo` ERROR, `penpay up` WARNING), else INFO.
"""

from __future__ import annotations

from pydantic import SecretStr

from security.logs import configure_logging, register_secret


def setup_logging(level: str | None = None, *, default: str | None = None) -> None:
    from penpay.settings import get_settings

    try:
        settings = get_settings()
    except Exception:  # the command reads the settings again and says what is wrong
        configure_logging(level or default or "INFO")
        return
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            register_secret(value.get_secret_value())
    configured = settings.log_level if "log_level" in settings.model_fields_set else None
    configure_logging(level or configured or default or "INFO")
