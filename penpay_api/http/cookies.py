"""Cookie sessions for browsers, with double-submit CSRF protection.

- A session-issuing RPC (Login, Refresh) whose response has `access_token` and `refresh_token`
  makes the bridge set `penpay_access` and `penpay_refresh` (HttpOnly, Secure, SameSite=Strict,
  Path=/) and a fresh `penpay_csrf` (readable by scripts, so they can echo it in a header).
  `Max-Age` of the access cookie is the response's `expires_in` (seconds) when present; the
  refresh and CSRF cookies use `refresh_expires_in` when present, else they last the browser session.
- A request without an Authorization header that carries `penpay_access` is sent with
  `authorization: Bearer <cookie>` (not for session-issuing RPCs: a login opens a new session and a
  refresh authenticates by its refresh token, which an expired access token must not spoil); for
  the refresh-token RPCs (Refresh, Logout) the refresh cookie fills an empty `refresh_token` field.
- A state-changing request (any method but GET, HEAD, OPTIONS) that the bridge authenticated from
  a cookie must carry `X-CSRF-Token` equal to the `penpay_csrf` cookie, or it is refused (403)
  before reaching the backend. A request with its own Authorization header is not cookie-authenticated.
- The tokens are removed from the JSON body of every session response (PEC §13: HttpOnly only),
  so a script cannot read what the cookies hide; the bridge's explicit, off-by-default token-in-body
  flow for non-browser clients is in app.py (BridgeConfig.tokens_in_body).
- A logout RPC clears all three cookies (whatever the backend answered).
- Deriv's OAuth binding is tied to the browser that started it: the start RPC's `browser_nonce`
  moves from the body into `penpay_deriv_oauth` (HttpOnly, SameSite=Lax so it travels on Deriv's
  top-level redirect back, Secure unless local development, Path=the OAuth routes, 10 minutes);
  on the callback RPC the field is set from that cookie only (a value in the query string is
  overwritten, so a crafted link cannot supply it), and a successful callback clears the cookie.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from penpay_api.http.rules import is_repeated

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ACCESS_FIELD = "access_token"
REFRESH_FIELD = "refresh_token"
EXPIRES_FIELD = "expires_in"
REFRESH_EXPIRES_FIELD = "refresh_expires_in"


def _rpcs(*names: str) -> frozenset[str]:
    return frozenset(names)


@dataclass(frozen=True)
class CookiePolicy:
    """Which RPCs issue, refresh and end cookie sessions ("package.Service/Method")."""

    session_rpcs: frozenset[str] = field(
        default_factory=lambda: _rpcs(
            "penpay.auth.v1.AuthService/Login", "penpay.auth.v1.AuthService/Refresh"
        )
    )
    refresh_token_rpcs: frozenset[str] = field(
        default_factory=lambda: _rpcs(
            "penpay.auth.v1.AuthService/Refresh", "penpay.auth.v1.AuthService/Logout"
        )
    )
    logout_rpcs: frozenset[str] = field(default_factory=lambda: _rpcs("penpay.auth.v1.AuthService/Logout"))
    access_cookie: str = "penpay_access"
    refresh_cookie: str = "penpay_refresh"
    csrf_cookie: str = "penpay_csrf"
    csrf_header: str = "X-CSRF-Token"
    secure: bool = True  # False only for local development over plain http
    path: str = "/"
    enabled: bool = True
    # The OAuth browser nonce (independent of `enabled`: the callback through the bridge needs it).
    oauth_start_rpcs: frozenset[str] = field(
        default_factory=lambda: _rpcs("penpay.auth.v1.AuthService/StartDerivOAuth")
    )
    oauth_callback_rpcs: frozenset[str] = field(
        default_factory=lambda: _rpcs("penpay.auth.v1.AuthService/CompleteDerivOAuth")
    )
    oauth_nonce_cookie: str = "penpay_deriv_oauth"
    oauth_nonce_field: str = "browser_nonce"
    oauth_nonce_path: str = "/v1/deriv_account/oauth"
    oauth_nonce_max_age: int = 600  # the state's lifetime


@dataclass(frozen=True, slots=True)
class CookieCredentials:
    authorization: str | None  # the value of the `authorization` metadata to send, if any
    from_cookie: bool  # True when a cookie supplied a credential (CSRF applies)


def _string_field(message: Message, name: str) -> FieldDescriptor | None:
    fd = message.DESCRIPTOR.fields_by_name.get(name)
    if fd is None or fd.type != FieldDescriptor.TYPE_STRING or is_repeated(fd):
        return None
    return fd


def resolve_credentials(
    policy: CookiePolicy,
    rpc: str,
    headers: Mapping[str, str],
    cookies: Mapping[str, str],
    request: Message,
) -> CookieCredentials:
    """The authorization to forward; may fill `refresh_token` in `request` from the refresh cookie."""
    explicit = headers.get("Authorization")
    if explicit is not None:
        return CookieCredentials(explicit, from_cookie=False)
    if not policy.enabled:
        return CookieCredentials(None, from_cookie=False)
    authorization = None
    from_cookie = False
    access = cookies.get(policy.access_cookie)
    if access and rpc not in policy.session_rpcs:
        authorization = f"Bearer {access}"
        from_cookie = True
    refresh = cookies.get(policy.refresh_cookie)
    if refresh and rpc in policy.refresh_token_rpcs and _string_field(request, REFRESH_FIELD) is not None:
        if not getattr(request, REFRESH_FIELD):
            setattr(request, REFRESH_FIELD, refresh)
            from_cookie = True
    return CookieCredentials(authorization, from_cookie)


def csrf_required(policy: CookiePolicy, http_method: str, credentials: CookieCredentials) -> bool:
    return policy.enabled and credentials.from_cookie and http_method.upper() not in SAFE_METHODS


def csrf_valid(policy: CookiePolicy, headers: Mapping[str, str], cookies: Mapping[str, str]) -> bool:
    sent = headers.get(policy.csrf_header, "")
    expected = cookies.get(policy.csrf_cookie, "")
    if not sent or not expected:
        return False
    return hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def _seconds(message: Message, name: str) -> int | None:
    fd = message.DESCRIPTOR.fields_by_name.get(name)
    if fd is None or is_repeated(fd):
        return None
    value = getattr(message, name)
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        if fd.message_type.full_name != "google.protobuf.Duration" or not message.HasField(name):
            return None
        value = value.seconds
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if value > 0 else None


def _set(
    policy: CookiePolicy,
    response: web.StreamResponse,
    name: str,
    value: str,
    *,
    max_age: int | None,
    httponly: bool,
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=policy.path,
        secure=policy.secure,
        httponly=httponly,
        samesite="Strict",
    )


def issue_session_cookies(policy: CookiePolicy, response: web.StreamResponse, message: Message) -> bool:
    """Set the session cookies from a session-issuing response; False when it carries no tokens."""
    if not policy.enabled or _string_field(message, ACCESS_FIELD) is None:
        return False
    if _string_field(message, REFRESH_FIELD) is None:
        return False
    access, refresh = getattr(message, ACCESS_FIELD), getattr(message, REFRESH_FIELD)
    if not access or not refresh:
        return False
    session_age = _seconds(message, REFRESH_EXPIRES_FIELD)
    _set(
        policy,
        response,
        policy.access_cookie,
        access,
        max_age=_seconds(message, EXPIRES_FIELD),
        httponly=True,
    )
    _set(policy, response, policy.refresh_cookie, refresh, max_age=session_age, httponly=True)
    _set(policy, response, policy.csrf_cookie, secrets.token_urlsafe(32), max_age=session_age, httponly=False)
    return True


def clear_session_cookies(policy: CookiePolicy, response: web.StreamResponse) -> None:
    for name, httponly in (
        (policy.access_cookie, True),
        (policy.refresh_cookie, True),
        (policy.csrf_cookie, False),
    ):
        response.set_cookie(
            name,
            "",
            max_age=0,
            expires="Thu, 01 Jan 1970 00:00:00 GMT",
            path=policy.path,
            secure=policy.secure,
            httponly=httponly,
            samesite="Strict",
        )


def strip_tokens(payload: object) -> object:
    """The response JSON without the token fields (they travel in HttpOnly cookies only)."""
    if isinstance(payload, dict):
        return {k: v for k, v in payload.items() if k not in (ACCESS_FIELD, REFRESH_FIELD)}
    return payload


def fill_oauth_nonce(policy: CookiePolicy, rpc: str, cookies: Mapping[str, str], request: Message) -> None:
    """On the OAuth callback, the nonce comes from the starting browser's cookie and nowhere else."""
    if rpc in policy.oauth_callback_rpcs and _string_field(request, policy.oauth_nonce_field) is not None:
        setattr(request, policy.oauth_nonce_field, cookies.get(policy.oauth_nonce_cookie, ""))


def _oauth_cookie(policy: CookiePolicy, response: web.StreamResponse, value: str, max_age: int) -> None:
    response.set_cookie(
        policy.oauth_nonce_cookie,
        value,
        max_age=max_age,
        expires="Thu, 01 Jan 1970 00:00:00 GMT" if max_age == 0 else None,
        path=policy.oauth_nonce_path,
        secure=policy.secure,
        httponly=True,
        samesite="Lax",  # Strict would not travel on Deriv's cross-site redirect back
    )


def issue_oauth_nonce(policy: CookiePolicy, response: web.StreamResponse, message: Message) -> bool:
    """Move the start RPC's nonce into its cookie; True when the body must drop the field."""
    if _string_field(message, policy.oauth_nonce_field) is None:
        return False
    nonce = getattr(message, policy.oauth_nonce_field)
    if not nonce:
        return False
    _oauth_cookie(policy, response, nonce, policy.oauth_nonce_max_age)
    return True


def clear_oauth_nonce(policy: CookiePolicy, response: web.StreamResponse) -> None:
    _oauth_cookie(policy, response, "", 0)


def strip_field(payload: object, name: str) -> object:
    if isinstance(payload, dict):
        return {k: v for k, v in payload.items() if k != name}
    return payload
