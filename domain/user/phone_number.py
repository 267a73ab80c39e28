"""PhoneNumber (PEC 3.1.1): E.164, stored as digits only ("254712345678")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.user.errors import InvalidPhoneNumber, NotMpesaPhone

_E164_DIGITS = re.compile(r"[1-9][0-9]{7,14}")
# Safaricom mobile ranges 07xx and 01xx, written internationally.
_MPESA_KENYA = re.compile(r"254[17][0-9]{8}")


@dataclass(frozen=True, slots=True, repr=False)
class PhoneNumber:
    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str):
            raise InvalidPhoneNumber("phone number must be text")
        digits = self.value.strip().removeprefix("+")
        if not _E164_DIGITS.fullmatch(digits):
            raise InvalidPhoneNumber("phone number must be in E.164 form, e.g. +254712345678")
        object.__setattr__(self, "value", digits)

    @classmethod
    def mpesa(cls, text: str) -> PhoneNumber:
        phone = cls(text)
        return phone.require_mpesa_kenya()

    @property
    def is_mpesa_kenya(self) -> bool:
        return _MPESA_KENYA.fullmatch(self.value) is not None

    def require_mpesa_kenya(self) -> PhoneNumber:
        if not self.is_mpesa_kenya:
            raise NotMpesaPhone(f"{self.masked()} is not a Kenyan M-Pesa number (+2547... or +2541...)")
        return self

    @property
    def e164(self) -> str:
        return f"+{self.value}"

    def masked(self) -> str:
        """For logs: country code and last three digits only."""
        return f"{self.value[:3]}{'*' * (len(self.value) - 6)}{self.value[-3:]}"

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        # Phone numbers are personal data; a repr ends up in logs and tracebacks.
        return f"PhoneNumber({self.masked()!r})"
