"""HTTP headers -> gRPC request metadata, gRPC response metadata -> HTTP headers (grpc-gateway style).

Forwarded: `Authorization` -> `authorization`, `Idempotency-Key` -> `idempotency-key`,
`X-Request-Id` -> `x-request-id` (generated when absent or malformed), `Grpc-Metadata-<k>` -> `<k>`
(base64-decoded for `-bin` keys), the client IP as `x-forwarded-for` and the Host as
`x-forwarded-host`. `Grpc-Metadata-*` may not set a key the bridge sets itself (authorization,
x-forwarded-*, idempotency-key, x-request-id) nor a reserved one (grpc-*, content-type, te...).
The forwarded `x-forwarded-for` is one address, the client's: the peer, or, when the peer is a
trusted proxy (PENPAY_TRUSTED_PROXIES), the first untrusted hop of X-Forwarded-For walked from the
right (security/proxies.py). The API trusts the bridge and so believes that one address.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from security.proxies import TrustedProxies

METADATA_PREFIX = "grpc-metadata-"
HTTP_CODE_KEY = "x-http-code"
_KEY = re.compile(r"[0-9a-z_.-]+")
_VALUE = re.compile(r"[\x20-\x7e]*")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SET_BY_BRIDGE = {"authorization", "idempotency-key", "x-request-id", "x-forwarded-for", "x-forwarded-host"}
_RESERVED = {"content-type", "te", "user-agent", "host", "connection", "grpc-timeout", "x-http-code"}
_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}

Metadata = list[tuple[str, str | bytes]]


class HeaderError(ValueError):
    """A header the bridge must forward is not valid as gRPC metadata (400)."""


def printable(value: str) -> bool:
    return _VALUE.fullmatch(value) is not None


def request_id_of(headers: Mapping[str, str]) -> str:
    given = headers.get("X-Request-Id", "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class ForwardingPolicy:
    # Reverse proxies in front of the bridge; none by default (the library's), `penpay http` passes
    # PENPAY_TRUSTED_PROXIES.
    trusted: TrustedProxies = field(default_factory=TrustedProxies)


def request_metadata(
    headers: Mapping[str, str],
    items: Iterable[tuple[str, str]],
    *,
    authorization: str | None,
    request_id: str,
    peer: str | None,
    policy: ForwardingPolicy = ForwardingPolicy(),
) -> Metadata:
    """`headers` answers single look-ups; `items` is every (name, value) pair, repeats included."""
    items = list(items)  # walked twice: X-Forwarded-For, then Grpc-Metadata-*
    metadata: Metadata = []
    if authorization is not None:
        if not printable(authorization):
            raise HeaderError("Authorization header is not printable ASCII")
        metadata.append(("authorization", authorization))
    idempotency_key = headers.get("Idempotency-Key")
    if idempotency_key is not None:
        if not idempotency_key or not printable(idempotency_key):
            raise HeaderError("Idempotency-Key must be printable ASCII")
        metadata.append(("idempotency-key", idempotency_key))
    metadata.append(("x-request-id", request_id))
    chain = ", ".join(value for name, value in items if name.lower() == "x-forwarded-for")
    forwarded = policy.trusted.client_address(peer, chain or None)
    if forwarded:
        metadata.append(("x-forwarded-for", forwarded))
    host = headers.get("Host")
    if host and printable(host):
        metadata.append(("x-forwarded-host", host))
    for name, value in items:
        lower = name.lower()
        if not lower.startswith(METADATA_PREFIX):
            continue
        key = lower[len(METADATA_PREFIX) :]
        if (
            not _KEY.fullmatch(key)
            or key in _SET_BY_BRIDGE
            or key in _RESERVED
            or key.startswith("grpc-")
            or key.startswith("grpcgateway-")
        ):
            continue
        if key.endswith("-bin"):
            try:
                metadata.append((key, base64.b64decode(value, validate=True)))
            except (binascii.Error, ValueError):
                continue
        elif printable(value):
            metadata.append((key, value))
    return metadata


def response_headers(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """`Grpc-Metadata-<key>` headers from the server's initial metadata (`x-http-code` excluded)."""
    headers: dict[str, str] = {}
    for key, value in metadata or ():
        if key == HTTP_CODE_KEY:
            continue
        if isinstance(value, bytes):
            rendered = base64.b64encode(value).decode("ascii")
        elif printable(value):
            rendered = value
        else:
            continue
        name = "Grpc-Metadata-" + key
        headers[name] = f"{headers[name]}, {rendered}" if name in headers else rendered
    return headers


def http_code_override(*metadata: Iterable[tuple[str, str | bytes]] | None, success: bool) -> int | None:
    """The `x-http-code` the server set (initial or trailing metadata), grpc-gateway's convention.

    On success only a 2xx is honoured (e.g. 201 Created); on failure only a 4xx/5xx (e.g. 422 for
    an idempotency key reused with another request), so an override never flips the outcome.
    """
    low, high = (200, 299) if success else (400, 599)
    for pairs in metadata:
        for key, value in pairs or ():
            if key != HTTP_CODE_KEY:
                continue
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            if text.isdigit() and low <= int(text) <= high:
                return int(text)
    return None


def parse_grpc_timeout(value: str | None) -> float | None:
    """`Grpc-Timeout: 5S` (gRPC's TimeoutValue TimeoutUnit, up to 8 digits) in seconds, None if absent/bad."""
    if not value or len(value) < 2 or len(value) > 9:
        return None
    digits, unit = value[:-1], value[-1]
    if not digits.isdigit() or unit not in _UNITS:
        return None
    return int(digits) * _UNITS[unit]
