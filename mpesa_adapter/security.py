"""STK Password/Timestamp and the SecurityCredential (daraja-protocol.md sections 2.1 and 6)."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone, tzinfo

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def _nairobi() -> tzinfo:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("Africa/Nairobi")
    except Exception:  # no tz database: Kenya has had no DST since 1942
        return timezone(timedelta(hours=3), "EAT")


NAIROBI = _nairobi()


def stk_timestamp(now: datetime) -> str:
    """`now` as `YYYYMMDDHHMMSS` in Africa/Nairobi time."""
    if now.tzinfo is None:
        raise ValueError("stk_timestamp needs an aware datetime")
    return now.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    """base64(BusinessShortCode + Passkey + Timestamp); the Timestamp sent must be this very string."""
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode("ascii")


def load_public_key(certificate_pem: bytes) -> rsa.RSAPublicKey:
    cert = x509.load_pem_x509_certificate(certificate_pem)
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the M-Pesa certificate does not hold an RSA public key")
    return key


def security_credential(public_key: rsa.RSAPublicKey, initiator_password: str) -> str:
    """RSA PKCS#1 v1.5 (not OAEP) over the raw password bytes, base64. Randomised: each call differs."""
    return base64.b64encode(public_key.encrypt(initiator_password.encode(), padding.PKCS1v15())).decode(
        "ascii"
    )
