"""IdempotencyKey (PEC 3.1.7, 10): the client's key, kept only as a scoped hash.

The raw key never leaves this module: not in attributes, repr, str or errors, because
a client key can be a bearer of meaning (or a secret) that must not reach logs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from domain.payments.errors import InvalidIdempotencyKey

MAX_RAW_KEY_LENGTH = 255
_PRINTABLE_ASCII = re.compile(rf"[\x20-\x7e]{{1,{MAX_RAW_KEY_LENGTH}}}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _frame(*parts: str) -> bytes:
    # Length-prefixed parts (netstring style), so ("a|b", "c") and ("a", "b|c") differ.
    out = bytearray()
    for part in parts:
        data = part.encode("utf-8")
        out += b"%d:" % len(data) + data + b","
    return bytes(out)


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    hash_hex: str
    scope: str
    operation: str

    def __post_init__(self) -> None:
        if not _SHA256_HEX.fullmatch(self.hash_hex):
            raise InvalidIdempotencyKey("hash_hex must be 64 lower-case hex characters")
        if not self.scope or not self.operation:
            raise InvalidIdempotencyKey("an idempotency key needs a scope and an operation")

    @classmethod
    def create(cls, raw_key: str, *, scope: str, operation: str) -> IdempotencyKey:
        """`scope` is whose key it is (e.g. the user id), `operation` what it guards
        (e.g. "deposit"): the same client key in another scope is another key."""
        if not isinstance(raw_key, str) or not _PRINTABLE_ASCII.fullmatch(raw_key):
            raise InvalidIdempotencyKey(
                f"idempotency key must be 1 to {MAX_RAW_KEY_LENGTH} printable ASCII characters"
            )
        digest = hashlib.sha256(_frame(scope, operation, raw_key)).hexdigest()
        return cls(digest, scope, operation)


def request_fingerprint(payload: bytes) -> str:
    """SHA-256 of the canonical request bytes: same key with a different request is refused."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise TypeError("request_fingerprint needs bytes")
    return hashlib.sha256(payload).hexdigest()
