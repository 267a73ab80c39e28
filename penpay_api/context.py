"""What the interceptors learn about a call, for the layers inside them and for the servicers.

One CallState per call, in a context variable: the outermost interceptor opens it, the
authentication interceptor adds the principal, the idempotency interceptor the key's hash,
the error-mapping interceptor the final code. Servicers read the caller's identity from here
(`current_user_id()`), never from the request.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Collection, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field

import grpc

from domain.shared.errors import InvalidIdentifier
from domain.shared.ids import UserId
from security.proxies import TrustedProxies

REQUEST_ID_KEY = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified access token names."""

    subject: str
    device_id: str
    session_id: str
    roles: frozenset[str] = frozenset()

    def has_role(self, role: str) -> bool:
        return role in self.roles

    @property
    def user_id(self) -> UserId | None:
        """The PenPay user, or None for a non-user subject (an operator token)."""
        try:
            return UserId.from_str(self.subject)
        except InvalidIdentifier:
            return None


@dataclass(slots=True)
class CallState:
    method: str
    request_id: str
    client_ip: str | None
    principal: Principal | None = None
    idempotency_key_hash: str | None = None
    # For a method whose use case reads and writes its idempotency record itself (the idempotency
    # interceptor's answered_by_use_case): the key's scope and the request's fingerprint.
    idempotency_scope: str | None = None
    idempotency_fingerprint: str | None = None
    # Set when a claimed_by_use_case method's use case committed its IN_FLIGHT claim with its intent.
    idempotency_claimed: bool = False
    # The session the authentication interceptor left to the use case's one read to check.
    session_to_check: str | None = None
    code: grpc.StatusCode = grpc.StatusCode.OK
    reason: str | None = None
    replayed: bool = False
    extras: dict[str, str] = field(default_factory=dict)


_CALL: ContextVar[CallState | None] = ContextVar("penpay_api_call", default=None)


def current_call() -> CallState:
    state = _CALL.get()
    if state is None:
        raise RuntimeError("no gRPC call in progress (is the server built with penpay_api.server?)")
    return state


def current_call_or_none() -> CallState | None:
    return _CALL.get()


def open_call(state: CallState) -> object:
    return _CALL.set(state)


def close_call(token: object) -> None:
    _CALL.reset(token)  # type: ignore[arg-type]


def metadata_value(metadata: Iterable[tuple[str, object]] | None, key: str) -> str | None:
    for k, v in metadata or ():
        if k == key:
            return v.decode("latin-1") if isinstance(v, bytes) else str(v)
    return None


def request_id_from(metadata: Iterable[tuple[str, object]] | None) -> str:
    """The client's x-request-id when it is a sane token, else a new one."""
    given = metadata_value(metadata, REQUEST_ID_KEY)
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return secrets.token_hex(8)


def peer_ip(peer: str | None) -> str | None:
    """'ipv4:127.0.0.1:5555' / 'ipv6:[::1]:5555' -> the address."""
    if not peer:
        return None
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return None


def client_ip_from(
    peer: str | None,
    metadata: Iterable[tuple[str, object]] | None,
    trusted_proxies: TrustedProxies | Collection[str],
) -> str | None:
    """The caller's IP (for rate limits): x-forwarded-for walked from the right, believed only from a
    trusted proxy (security/proxies.py); anyone else's would let a client pick its rate-limit bucket."""
    trusted = (
        trusted_proxies
        if isinstance(trusted_proxies, TrustedProxies)
        else TrustedProxies.parse(trusted_proxies)
    )
    forwarded = ", ".join(
        str(value) for key, value in (metadata or ()) if key == "x-forwarded-for" and isinstance(value, str)
    )
    return trusted.client_address(peer_ip(peer), forwarded or None)
