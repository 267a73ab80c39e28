"""Errors of the identity context."""

from __future__ import annotations

from domain.shared.errors import DomainError


class InvalidEmail(DomainError):
    reason = "INVALID_EMAIL"
    field = "email"


class InvalidPhoneNumber(DomainError):
    reason = "INVALID_PHONE_NUMBER"
    field = "phone"


class NotMpesaPhone(DomainError):
    """The number is valid but is not a Kenyan Safaricom M-Pesa line."""

    reason = "NOT_MPESA_PHONE"
    field = "phone"


class InvalidDerivLoginId(DomainError):
    reason = "INVALID_DERIV_LOGIN_ID"
    field = "deriv_login_id"


class VirtualAccountRefused(DomainError):
    """Demo (virtual) Deriv accounts hold no real money, so money cannot move to or from them."""

    reason = "VIRTUAL_ACCOUNT_REFUSED"
    field = "deriv_login_id"


class DerivAccountAlreadyBound(DomainError):
    """PEC 3.1.2: one user <-> one USD Deriv account."""

    reason = "DERIV_ACCOUNT_ALREADY_BOUND"
    field = "deriv_login_id"


class InvalidPasswordHash(DomainError):
    reason = "INVALID_PASSWORD_HASH"


class InvalidDevice(DomainError):
    reason = "INVALID_DEVICE"
    field = "device_id"


class DeviceLimitReached(DomainError):
    reason = "DEVICE_LIMIT_REACHED"
    field = "device_id"


class DeviceNotFound(DomainError):
    reason = "DEVICE_NOT_FOUND"
    field = "device_id"
