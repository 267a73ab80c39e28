"""Value objects of the identity context (PEC 3.3.1), one module each, gathered here."""

from __future__ import annotations

from domain.user.deriv_login_id import DerivLoginId
from domain.user.email import Email
from domain.user.kyc_snapshot import KycSnapshot
from domain.user.password_hash import PasswordHash
from domain.user.phone_number import PhoneNumber

__all__ = ["DerivLoginId", "Email", "KycSnapshot", "PasswordHash", "PhoneNumber"]
