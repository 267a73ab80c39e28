"""Binding a user to a new-API (REST) Deriv account, and keeping its OAuth token usable.

OAuth2 authorization code + PKCE: `start` gives the URL the user's browser goes to; Deriv sends the
browser back to PenPay's redirect route with `code` and `state`; `complete` exchanges the code (from
the backend, with the verifier) and binds the account its token names, by nickname.

The state is sealed (AES-GCM with the PII key) around the user id, the PKCE verifier, an expiry and
the SHA-256 of a browser nonce, so nothing is stored between the two steps and the redirect needs no
session cookie (a SameSite=Strict cookie is not sent on the cross-site redirect from Deriv). The
nonce goes to the browser that started (the bridge keeps it in a SameSite=Lax cookie, which does
travel on that top-level redirect) and must come back with the code: otherwise a user could send
their authorize URL to someone else and bind that person's Deriv account when they consent
(login CSRF). A state replayed after its binding is harmless: Deriv's codes are single-use.

A v3 user who binds a REST account moves to it: the one USD account row is re-addressed to
"@nickname", the transactions keep the account they were made with (history and ledger unchanged).

Tokens: stored encrypted. `token(user_id)` returns a usable one, refreshing it shortly before it
expires where Deriv gave a refresh token (coalesced per refresh token by the OAuth adapter; a
refresh another process won first is picked up from the database). A token that cannot be made
usable raises DerivRebindRequired: the user is told to bind again.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from application.identity.errors import (
    DerivAccountNotBound,
    DerivBindingRefused,
    DerivOAuthBrowserMismatch,
    DerivOAuthStateInvalid,
    DerivRebindRequired,
    UserNotFound,
)
from application.identity.ports import (
    DerivAccountGateway,
    DerivCredentials,
    DerivOAuth,
    DerivOAuthTokens,
    IdentityUnitOfWork,
)
from domain.shared.clock import Clock
from domain.shared.ids import UserId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.kyc_snapshot import KycSnapshot

log = structlog.get_logger("penpay.identity.deriv_rest")

DERIV_CURRENCY = "USD"
# payment: transfers and withdrawals; account_manage: GET /account/v1/nickname (the account's name).
REST_SCOPES = ("payment", "account_manage")
STATE_TTL = timedelta(minutes=10)
# Refresh this long before the access token expires, so a call never starts with a dying token.
REFRESH_MARGIN = timedelta(seconds=120)
_STATE_AAD = "deriv_oauth_state"


class SecretBox(Protocol):
    """Authenticated encryption (the PII cipher)."""

    def encrypt(self, plaintext: str, *, aad: str) -> bytes: ...

    def decrypt(self, blob: bytes, *, aad: str) -> str: ...


@dataclass(frozen=True, slots=True)
class OAuthStart:
    """Where to send the browser, and the nonce that browser must bring back to the callback."""

    authorize_url: str
    browser_nonce: str


@dataclass(frozen=True, slots=True)
class _State:
    user_id: UserId
    verifier: str
    nonce_hash: str


def _nonce_hash(nonce: str) -> str:
    digest = hashlib.sha256(nonce.encode("utf-8", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, code_challenge): 64 url-safe characters and BASE64URL(SHA256(verifier))."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class DerivRestBinding:
    def __init__(
        self,
        *,
        unit_of_work: Callable[[], IdentityUnitOfWork],
        oauth: DerivOAuth,
        deriv: DerivAccountGateway,
        box: SecretBox,
        clock: Clock,
    ) -> None:
        self._uow = unit_of_work
        self._oauth = oauth
        self._deriv = deriv
        self._box = box
        self._clock = clock
        self._refreshing: dict[UserId, asyncio.Future[str]] = {}

    # --- the two steps of the binding -------------------------------------------------------

    async def start(self, *, user_id: UserId) -> OAuthStart:
        """The URL of Deriv's consent page for this user (PKCE S256, sealed state) and the nonce
        the starting browser keeps for the callback."""
        async with self._uow() as uow:
            if await uow.users.get(user_id) is None:
                raise UserNotFound("no such user")
        verifier, challenge = pkce_pair()
        nonce = secrets.token_urlsafe(32)
        expires = int((self._clock.now() + STATE_TTL).timestamp())
        payload = json.dumps(
            {"u": str(user_id), "v": verifier, "e": expires, "n": _nonce_hash(nonce)}, separators=(",", ":")
        )
        sealed = self._box.encrypt(payload, aad=_STATE_AAD)
        state = base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")
        log.info("deriv_rest.binding_started", user_id=str(user_id))
        url = self._oauth.authorize_url(state=state, challenge=challenge, scopes=REST_SCOPES)
        return OAuthStart(authorize_url=url, browser_nonce=nonce)

    def _open_state(self, state: str) -> _State:
        try:
            sealed = base64.urlsafe_b64decode(state + "=" * (-len(state) % 4))
            data = json.loads(self._box.decrypt(sealed, aad=_STATE_AAD))
            opened = _State(UserId.from_str(data["u"]), str(data["v"]), str(data["n"]))
            expires = int(data["e"])
        except Exception:
            # whatever is wrong with it (not ours, damaged, not JSON, sealed before browser
            # nonces), the answer is the same
            raise DerivOAuthStateInvalid("this Deriv sign-in link is not valid: bind again") from None
        if self._clock.now() >= datetime.fromtimestamp(expires, UTC):
            raise DerivOAuthStateInvalid("this Deriv sign-in took too long: start the binding again")
        return opened

    async def complete(self, *, state: str, code: str, browser_nonce: str) -> tuple[UserId, DerivLoginId]:
        """The redirect's code and state, from the browser holding the nonce -> the user's REST
        account bound (or moved to). The nonce is checked before the code is spent."""
        opened = self._open_state(state)
        if not browser_nonce or not hmac.compare_digest(_nonce_hash(browser_nonce), opened.nonce_hash):
            await self._refuse_callback(opened.user_id, missing=not browser_nonce)
        if not code:
            raise DerivBindingRefused("Deriv sent no authorization code: start the binding again")
        tokens = await self._oauth.exchange(code=code, verifier=opened.verifier)
        return opened.user_id, await self.bind(opened.user_id, tokens)

    async def _refuse_callback(self, user_id: UserId, *, missing: bool) -> None:
        """Audit the refused redirect (nothing else changes) and raise DerivOAuthBrowserMismatch."""
        reason = "browser_nonce_missing" if missing else "browser_nonce_mismatch"
        async with self._uow() as uow:
            uow.audit(
                action="DerivOAuthCallbackRefused",
                subject_type="User",
                subject_id=str(user_id),
                details={"reason": reason},
            )
            await uow.commit()
        log.warning("deriv_rest.callback_refused", user_id=str(user_id), reason=reason)
        raise DerivOAuthBrowserMismatch(
            "this Deriv sign-in did not come back to the browser that started it: "
            "start the binding again from PenPay in this browser"
        )

    async def bind(self, user_id: UserId, tokens: DerivOAuthTokens) -> DerivLoginId:
        missing = set(REST_SCOPES) - set(tokens.scopes) if tokens.scopes else set()
        if missing:
            raise DerivBindingRefused(
                f"the Deriv sign-in lacks the scopes {', '.join(sorted(missing))}; allow them and bind again"
            )
        account = await self._deriv.authorize_rest(tokens.access_token)
        if account.currency != DERIV_CURRENCY:
            raise DerivBindingRefused(
                f"Deriv account @{account.nickname} is in {account.currency or 'no currency'}; "
                "bind a USD account"
            )
        rest_id = DerivLoginId.rest(account.nickname)
        snapshot = await self._last_v3_snapshot(user_id)
        now = self._clock.now()
        async with self._uow() as uow:
            user = await uow.users.get(user_id)
            if user is None:
                raise UserNotFound("no such user")
            previous = user.deriv_login_id
            user.move_deriv_account_to_rest(rest_id, now=now)  # DerivAccountAlreadyBound if another
            if snapshot is not None:
                user.take_kyc_snapshot(snapshot, now=now)
            await uow.users.save(user)  # DerivAccountAlreadyBound if bound to another user
            await uow.users.store_deriv_credentials(
                user_id,
                token=tokens.access_token,
                scopes=tokens.scopes or REST_SCOPES,
                refresh_token=tokens.refresh_token,
                expires_at=tokens.expires_at,
            )
            moved = previous is not None and not previous.is_rest
            uow.audit(
                action="DerivAccountMovedToRest" if moved else "DerivAccountBound",
                subject_type="User",
                subject_id=str(user_id),
                details={
                    "deriv_login_id": rest_id.value,
                    "from_deriv_login_id": previous.value if previous is not None else None,
                    "api": "rest",
                    "kyc_from_v3": snapshot is not None or (moved and user.kyc is not None),
                },
            )
            await uow.commit()
        log.info("deriv_rest.bound", user_id=str(user_id), deriv_login_id=rest_id.value)
        return rest_id

    async def _last_v3_snapshot(self, user_id: UserId) -> KycSnapshot | None:
        """A moving user's profile, read with their v3 token while it still answers (Deriv's new API
        has no get_settings). None when there is no v3 binding or Deriv no longer takes the token:
        the snapshot already stored then stays."""
        async with self._uow() as uow:
            user = await uow.users.get(user_id)
            if user is None or user.deriv_login_id is None or user.deriv_login_id.is_rest:
                return None
            token = await uow.users.load_deriv_token(user_id)
        if not token:
            return None
        try:
            settings = await self._deriv.get_settings(token)
        except Exception as exc:  # any failure: keep the stored snapshot
            log.info("deriv_rest.v3_profile_unavailable", user_id=str(user_id), error=type(exc).__name__)
            return None
        return KycSnapshot.from_get_settings(settings, self._clock.now())

    # --- a usable token ---------------------------------------------------------------------

    async def _credentials(self, user_id: UserId) -> DerivCredentials:
        async with self._uow() as uow:
            credentials = await uow.users.load_deriv_credentials(user_id)
        if credentials is None:
            raise DerivAccountNotBound("bind your Deriv account first", field="deriv_login_id")
        return credentials

    def _usable(self, credentials: DerivCredentials) -> bool:
        expires = credentials.expires_at
        return expires is None or self._clock.now() < expires - REFRESH_MARGIN

    async def token(self, user_id: UserId) -> str:
        """The user's REST access token, refreshed first when it is about to expire."""
        credentials = await self._credentials(user_id)
        if self._usable(credentials):
            return credentials.token
        # One refresh (and its store) per user at a time in this process: a caller arriving while
        # it runs waits for it, never spends the rotated refresh token a second time.
        flight = self._refreshing.get(user_id)
        if flight is None:
            flight = asyncio.ensure_future(self._refresh(user_id, credentials))
            self._refreshing[user_id] = flight
            flight.add_done_callback(lambda _: self._refreshing.pop(user_id, None))
        return await asyncio.shield(flight)

    async def _refresh(self, user_id: UserId, credentials: DerivCredentials) -> str:
        again = await self._credentials(user_id)
        if self._usable(again):  # refreshed since we looked
            return again.token
        credentials = again
        if credentials.refresh_token is None:
            raise DerivRebindRequired("your Deriv sign-in has expired: bind your Deriv account again")
        try:
            tokens = await self._oauth.refresh(credentials.refresh_token)
        except DerivRebindRequired:
            # Refresh tokens rotate: another process may have spent this one and stored the next.
            latest = await self._credentials(user_id)
            if latest.refresh_token != credentials.refresh_token and self._usable(latest):
                return latest.token
            log.info("deriv_rest.refresh_refused", user_id=str(user_id))
            raise
        async with self._uow() as uow:
            await uow.users.store_deriv_credentials(
                user_id,
                token=tokens.access_token,
                scopes=tokens.scopes or credentials.scopes,
                refresh_token=tokens.refresh_token or credentials.refresh_token,
                expires_at=tokens.expires_at,
            )
            await uow.commit()
        log.info("deriv_rest.token_refreshed", user_id=str(user_id))
        return tokens.access_token

    async def check_account(self, user_id: UserId, bound: DerivLoginId) -> None:
        """The token still opens the bound account (before money moves); DerivRebindRequired if not."""
        account = await self._deriv.authorize_rest(await self.token(user_id))
        if DerivLoginId.rest(account.nickname) != bound:
            raise DerivRebindRequired(
                f"your Deriv sign-in now names @{account.nickname}, not {bound}: bind your account again"
            )
