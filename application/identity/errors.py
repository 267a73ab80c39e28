"""Errors of the identity use cases. `reason` codes are stable (they reach API clients)."""

from __future__ import annotations

from domain.shared.errors import DomainError


class WeakPassword(DomainError):
    reason = "WEAK_PASSWORD"
    field = "password"


class AlreadyRegistered(DomainError):
    reason = "ALREADY_REGISTERED"


class UserNotFound(DomainError):
    reason = "USER_NOT_FOUND"


class InvalidCredentials(DomainError):
    """Wrong email/phone or password; deliberately does not say which."""

    reason = "INVALID_CREDENTIALS"


class CurrentPasswordWrong(DomainError):
    """ChangePassword with a wrong current password (not UNAUTHENTICATED: the session is fine)."""

    reason = "CURRENT_PASSWORD_WRONG"
    field = "current_password"


class InvalidAccessToken(DomainError):
    reason = "INVALID_ACCESS_TOKEN"


class InvalidRefreshToken(DomainError):
    reason = "INVALID_REFRESH_TOKEN"


class RefreshTokenReused(InvalidRefreshToken):
    """A refresh token was presented twice: its whole family (session) has been revoked."""

    reason = "REFRESH_TOKEN_REUSED"


class VerificationCodeInvalid(DomainError):
    reason = "VERIFICATION_CODE_INVALID"
    field = "code"

    def __init__(self, message: str, *, attempts_left: int = 0) -> None:
        super().__init__(message)
        self.attempts_left = attempts_left


class VerificationAttemptsExhausted(DomainError):
    reason = "VERIFICATION_ATTEMPTS_EXHAUSTED"
    field = "code"


class RateLimited(DomainError):
    """Too many calls; the API maps it to RESOURCE_EXHAUSTED with retry-after."""

    reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = max(1, int(retry_after_seconds))


class MessageNotDelivered(DomainError):
    """The SMS or email provider did not take a message (down, or it refused it): try again later.
    The message clients see stays generic; `provider_status` (logged) says what the provider said."""

    reason = "MESSAGE_NOT_DELIVERED"

    def __init__(self, message: str, *, provider_status: str = "") -> None:
        super().__init__(message)
        self.provider_status = provider_status


class DerivBindingRefused(DomainError):
    reason = "DERIV_BINDING_REFUSED"
    field = "deriv_token"


class DerivRebindRequired(DomainError):
    """The user's Deriv token stopped working (revoked, expired without a refresh token, refresh
    refused, or Deriv moved the account to its new API): only binding again helps."""

    reason = "DERIV_REBIND_REQUIRED"
    field = "deriv_token"


class DerivOAuthStateInvalid(DomainError):
    """The OAuth redirect's state is not one PenPay issued, or it expired: start the binding again."""

    reason = "DERIV_OAUTH_STATE_INVALID"
    field = "state"


class DerivOAuthBrowserMismatch(DomainError):
    """The OAuth redirect reached PenPay from a browser other than the one that started the binding
    (its nonce cookie is missing or different): someone else's consent must not bind this user."""

    reason = "DERIV_OAUTH_BROWSER_MISMATCH"
    field = "browser_nonce"


class DerivUnavailable(DomainError):
    """Deriv's sign-in service did not answer (timeout, 5xx, no connection): try again shortly."""

    reason = "DERIV_UNAVAILABLE"


class DerivAccountNotBound(DomainError):
    reason = "DERIV_ACCOUNT_NOT_BOUND"


class ComplianceRefused(DomainError):
    """A money movement refused (or held for review) by the KYC/AML policy."""

    reason = "COMPLIANCE_REFUSED"

    def __init__(self, message: str, *, rule: str, hold_for_review: bool = False) -> None:
        super().__init__(message)
        self.rule = rule
        self.hold_for_review = hold_for_review
