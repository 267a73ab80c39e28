from __future__ import annotations

import hashlib

import pytest

from domain.payments.errors import InvalidIdempotencyKey
from domain.payments.idempotency import IdempotencyKey, request_fingerprint

pytestmark = pytest.mark.unit

RAW = "req-abc-123-def-456-SECRETISH"


def test_repr_and_str_never_reveal_the_raw_key() -> None:
    key = IdempotencyKey.create(RAW, scope="user-1", operation="deposit")
    assert RAW not in repr(key)
    assert RAW not in str(key)
    assert not any(RAW in str(getattr(key, name)) for name in ("hash_hex", "scope", "operation"))


def test_hash_is_sha256_hex() -> None:
    key = IdempotencyKey.create(RAW, scope="user-1", operation="deposit")
    assert len(key.hash_hex) == 64
    int(key.hash_hex, 16)


def test_same_key_same_scope_same_hash() -> None:
    a = IdempotencyKey.create(RAW, scope="user-1", operation="deposit")
    b = IdempotencyKey.create(RAW, scope="user-1", operation="deposit")
    assert a == b


def test_the_same_client_key_means_another_thing_in_another_scope_or_operation() -> None:
    base = IdempotencyKey.create(RAW, scope="user-1", operation="deposit")
    assert IdempotencyKey.create(RAW, scope="user-2", operation="deposit").hash_hex != base.hash_hex
    assert IdempotencyKey.create(RAW, scope="user-1", operation="withdrawal").hash_hex != base.hash_hex


def test_framing_is_unambiguous() -> None:
    a = IdempotencyKey.create("c", scope="a|b", operation="x")
    b = IdempotencyKey.create("b|c", scope="a", operation="x")
    assert a.hash_hex != b.hash_hex


@pytest.mark.parametrize("raw", ["", "x" * 256, "tab\there", "café", "new\nline"])
def test_bad_raw_keys_are_refused_naming_the_field(raw: str) -> None:
    with pytest.raises(InvalidIdempotencyKey) as err:
        IdempotencyKey.create(raw, scope="user-1", operation="deposit")
    assert err.value.field == "idempotency_key"
    assert raw not in err.value.message or raw == ""


def test_longest_allowed_key_is_255_printable_characters() -> None:
    IdempotencyKey.create("~" * 255, scope="user-1", operation="deposit")


def test_request_fingerprint_is_sha256_of_the_bytes() -> None:
    assert request_fingerprint(b'{"a":1}') == hashlib.sha256(b'{"a":1}').hexdigest()
    assert request_fingerprint(b"a") != request_fingerprint(b"b")
