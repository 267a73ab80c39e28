"""The password policy: 12 to 128 characters, not all of one character class, not the email
or phone, not one repeated character. No breach-list check (no external calls at registration).

Length is the main defence (NIST SP 800-63B); the class rule only refuses the weakest
shapes (all digits, all lower-case letters, ...).
"""

from __future__ import annotations

import unicodedata

from application.identity.errors import WeakPassword

MIN_LENGTH = 12
MAX_LENGTH = 128  # bounds the Argon2 input and the request size


def _classes(password: str) -> set[str]:
    found = set()
    for ch in password:
        if ch.isdigit():
            found.add("digit")
        elif ch.isalpha():
            found.add("upper" if ch.isupper() else "lower" if ch.islower() else "letter")
        elif ch.isspace():
            found.add("space")
        else:
            found.add("symbol")
    return found


def check_password(password: str, *, email: str = "", phone: str = "") -> str:
    """Return the password NFKC-normalised, or raise WeakPassword saying what is wrong."""
    if not isinstance(password, str):
        raise WeakPassword("password must be text")
    normalised = unicodedata.normalize("NFKC", password)
    if len(normalised) < MIN_LENGTH:
        raise WeakPassword(f"password must be at least {MIN_LENGTH} characters")
    if len(normalised) > MAX_LENGTH:
        raise WeakPassword(f"password must be at most {MAX_LENGTH} characters")
    if len(_classes(normalised)) < 2:
        raise WeakPassword("password must mix at least two kinds of characters (letters, digits, symbols)")
    if len(set(normalised)) < 4:
        raise WeakPassword("password is too repetitive")
    lowered = normalised.lower()
    for contact in (email.lower(), email.lower().partition("@")[0], phone.lstrip("+")):
        if contact and len(contact) >= 4 and contact in lowered:
            raise WeakPassword("password must not contain your email or phone number")
    return normalised
