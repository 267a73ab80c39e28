"""Database URL helpers."""

from __future__ import annotations

from sqlalchemy.engine import make_url


def redact(url: str) -> str:
    """The URL with its password hidden, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)
