"""AES-256-GCM encryption of personal data at rest, with key ids for rotation.

Keys come from PENPAY_PII_KEYS (penpay/settings.py, handed in by the composition root):
"kid1:<base64 32 bytes>,kid2:<base64 32 bytes>", the first being
the current (encrypting) key; the others only decrypt, so a rotation is: put the new key first,
keep the old one until every row has been re-encrypted (a row is rewritten with the current key
whenever it is saved). Outside production a fixed development key is used when the variable is unset.

A ciphertext is self-describing: b"\\x01" | len(kid) | kid | 12-byte nonce | ciphertext+tag.
The associated data binds it to where it is stored (table, column, owner id), so a ciphertext
copied into another user's row or another column does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Mapping
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from security.config import MissingSecret

ENV_VAR = "PENPAY_PII_KEYS"
_VERSION = 1
_NONCE_BYTES = 12
# Not a secret: only ever used outside production, to make development setups work.
_DEV_KEY = hashlib.sha256(b"penpay development pii key (not secret, never for production)").digest()
DEV_KEY_ID = "dev"


class PiiDecryptionError(Exception):
    """The ciphertext is damaged, was moved, or its key is unknown."""


class PiiCipher:
    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError("the current PII key id must be one of the keys")
        for kid, key in keys.items():
            if not kid or len(kid) > 32 or not kid.isascii():
                raise ValueError("PII key ids are 1 to 32 ASCII characters")
            if len(key) != 32:
                raise ValueError(f"PII key {kid} must be 32 bytes (AES-256)")
        self._aead = {kid: AESGCM(key) for kid, key in keys.items()}
        self._raw = {kid: bytes(key) for kid, key in keys.items()}
        self.current_key_id = current

    def __repr__(self) -> str:
        return f"PiiCipher(current={self.current_key_id!r}, keys={sorted(self._aead)!r})"

    @classmethod
    def from_config(cls, text: str) -> PiiCipher:
        keys: dict[str, bytes] = {}
        current = ""
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            kid, sep, encoded = part.partition(":")
            if not sep:
                raise ValueError(f"{ENV_VAR} entries look like kid:base64key")
            try:
                keys[kid.strip()] = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error as exc:
                raise ValueError(f"PII key {kid.strip()} is not valid base64") from exc
            current = current or kid.strip()
        if not keys:
            raise ValueError(f"{ENV_VAR} holds no key")
        return cls(keys, current)

    @classmethod
    def configured(cls, text: str, *, production: bool) -> PiiCipher:
        """The keys of PENPAY_PII_KEYS; unset: the development key, or MissingSecret in production."""
        if text.strip():
            return cls.from_config(text)
        if production:
            raise MissingSecret(
                f"{ENV_VAR}: expected kid:base64-32-byte-key[,kid:older]; production has no default"
            )
        return cls.development()

    @classmethod
    def development(cls) -> PiiCipher:
        return cls({DEV_KEY_ID: _DEV_KEY}, DEV_KEY_ID)

    @staticmethod
    def generate_key() -> str:
        """A new random key, base64, for PENPAY_PII_KEYS."""
        return base64.b64encode(secrets.token_bytes(32)).decode()

    def encrypt(self, plaintext: str, *, aad: str) -> bytes:
        kid = self.current_key_id.encode()
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead[self.current_key_id].encrypt(nonce, plaintext.encode(), aad.encode())
        return bytes([_VERSION, len(kid)]) + kid + nonce + sealed

    def encrypt_optional(self, plaintext: str | None, *, aad: str) -> bytes | None:
        return None if plaintext is None else self.encrypt(plaintext, aad=aad)

    @staticmethod
    def key_id_of(blob: bytes) -> str:
        if len(blob) < 2 or blob[0] != _VERSION:
            raise PiiDecryptionError("not a PenPay PII ciphertext")
        return blob[2 : 2 + blob[1]].decode("ascii", errors="replace")

    def decrypt(self, blob: bytes, *, aad: str) -> str:
        blob = bytes(blob)
        kid = self.key_id_of(blob)
        aead = self._aead.get(kid)
        if aead is None:
            raise PiiDecryptionError(f"PII key {kid!r} is not configured")
        start = 2 + blob[1]
        nonce, sealed = blob[start : start + _NONCE_BYTES], blob[start + _NONCE_BYTES :]
        try:
            return aead.decrypt(nonce, sealed, aad.encode()).decode()
        except InvalidTag as exc:
            raise PiiDecryptionError("PII ciphertext does not authenticate (damaged or moved)") from exc

    def decrypt_optional(self, blob: bytes | None, *, aad: str) -> str | None:
        return None if blob is None else self.decrypt(blob, aad=aad)

    def derive_key(self, purpose: str) -> bytes:
        """A 32-byte key for another purpose (e.g. keyed code hashes), derived from the current key."""
        raw = self._raw[self.current_key_id]
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(raw)


@lru_cache(maxsize=1)
def default_cipher() -> PiiCipher:
    """The development key: what repositories built without a cipher use (tests). Every process
    built by the composition root hands its repositories the configured cipher (bootstrap.Core.pii)."""
    return PiiCipher.development()
