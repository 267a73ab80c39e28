"""Access tokens with roles, and who may call what.

Users' access tokens (IdentityService.login/refresh) carry no roles. Staff tokens carry
`"roles": [...]` (some of "viewer", "operator", "approver") and a subject that is not a user id
("operator:<name>"), so a staff token can call OpsService and nothing that acts on a user's money
or data, and a user token cannot call OpsService. Within OpsService a method may need one role
in particular (AccessPolicy.method_roles): e.g. proposing a review action needs "operator",
approving one needs "approver". Both are RS256 JWTs signed by the same keys (security/access_tokens.py),
verified by the same code: the roles claim is read only after the signature, issuer, audience
and expiry have been checked.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum

import jwt

from application.identity.errors import InvalidAccessToken
from penpay_api.context import Principal
from security.access_tokens import ALGORITHM, RsaAccessTokens

VIEWER_ROLE = "viewer"
OPERATOR_ROLE = "operator"
APPROVER_ROLE = "approver"
STAFF_ROLES = frozenset({VIEWER_ROLE, OPERATOR_ROLE, APPROVER_ROLE})
ROLES_CLAIM = "roles"
_OPERATOR_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,47}")


class RoleAwareAccessTokens(RsaAccessTokens):
    """RsaAccessTokens that can also issue and read role-bearing (operator) tokens."""

    def issue_operator_token(
        self, *, operator: str, now: datetime, roles: Iterable[str] = (OPERATOR_ROLE,)
    ) -> tuple[str, datetime]:
        if not _OPERATOR_NAME.fullmatch(operator):
            raise ValueError("operator name: 1 to 48 of a-z 0-9 . _ - (starting with a letter or digit)")
        granted = sorted(set(roles))
        if not granted or not set(granted) <= STAFF_ROLES:
            raise ValueError(f"roles: one or more of {', '.join(sorted(STAFF_ROLES))}")
        expires = now + self.ttl
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": f"operator:{operator}",
            "did": "operator-console",
            "sid": secrets.token_hex(8),
            ROLES_CLAIM: granted,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": secrets.token_hex(16),
        }
        signing = self._keys[0]
        token = jwt.encode(claims, signing.private_key, algorithm=ALGORITHM, headers={"kid": signing.kid})
        return token, expires

    def verify_principal(self, token: str, *, now: datetime) -> Principal:
        # signature, alg, kid, iss, aud, exp: or InvalidAccessToken. The roles claim, which
        # AccessClaims does not carry, is read from the same verified payload.
        claims, payload = self.verified(token, now=now)
        roles = payload.get(ROLES_CLAIM) or []
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise InvalidAccessToken("access token roles are malformed")
        return Principal(
            subject=claims.user_id,
            device_id=claims.device_id,
            session_id=claims.session_id,
            roles=frozenset(roles),
        )


def expires_in(expires_at: datetime, now: datetime) -> int:
    return max(0, int((expires_at - now) / timedelta(seconds=1)))


class Access(StrEnum):
    PUBLIC = "PUBLIC"  # no token
    USER = "USER"  # a user's token; the call acts on that user
    OPERATOR = "OPERATOR"  # a staff token (viewer, operator or approver)


class AccessPolicy:
    """Per method (full name "/pkg.Service/Method") or per service ("pkg.Service")."""

    def __init__(
        self,
        *,
        public_methods: Iterable[str] = (),
        public_services: Iterable[str] = (),
        operator_services: Iterable[str] = (),
        method_roles: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self._public_methods = frozenset(public_methods)
        self._public_services = frozenset(public_services)
        self._operator_services = frozenset(operator_services)
        self._method_roles = {m: frozenset(r) for m, r in (method_roles or {}).items()}

    def roles_for(self, method: str) -> frozenset[str]:
        """The staff roles of which a caller of this staff method needs one (default: the
        operator role, as before roles were split)."""
        return self._method_roles.get(method, frozenset({OPERATOR_ROLE}))

    def access(self, method: str) -> Access:
        service = method.lstrip("/").split("/", 1)[0]
        if method in self._public_methods or service in self._public_services:
            return Access.PUBLIC
        if service in self._operator_services:
            return Access.OPERATOR
        return Access.USER
