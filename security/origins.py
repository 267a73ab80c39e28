"""Browser origins as PENPAY_CORS_ALLOWED_ORIGINS lists them: exact `scheme://host[:port]`."""

from __future__ import annotations

from urllib.parse import urlsplit


def parse_origin(text: str) -> str:
    """The origin in canonical (lower-case) form; ValueError for anything else (a path, a wildcard:
    credentials are involved, so every allowed origin is named)."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"a CORS origin is scheme://host[:port], got {text.strip()!r}")
    if parts.query or parts.fragment or "*" in parts.netloc or "@" in parts.netloc:
        raise ValueError(f"a CORS origin is scheme://host[:port], got {text.strip()!r}")
    return f"{parts.scheme}://{parts.netloc}".lower()


def parse_origins(text: str) -> frozenset[str]:
    return frozenset(parse_origin(part) for part in text.split(",") if part.strip())
