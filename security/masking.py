"""Masking of personal identifiers for logs: a phone shows its country code and last three digits."""

from __future__ import annotations

from domain.shared.errors import DomainError
from domain.user.phone_number import PhoneNumber


def mask_phone(text: str) -> str:
    try:
        return PhoneNumber(text).masked()
    except DomainError:
        return "***"  # not a phone: show nothing of it
