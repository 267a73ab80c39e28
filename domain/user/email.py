"""Email (PEC 3.1.1): a canonical contact, stored lower-case."""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.user.errors import InvalidEmail

# Deliberately modest: a dotted domain with an alphabetic TLD and a common local part.
# Deliverability is proven by the verification email, not by a regex.
_EMAIL = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)


@dataclass(frozen=True, slots=True)
class Email:
    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str):
            raise InvalidEmail("email must be text")
        normalised = self.value.strip().lower()
        local = normalised.partition("@")[0]
        if len(normalised) > 254 or len(local) > 64 or not _EMAIL.fullmatch(normalised):
            raise InvalidEmail("not a valid email address")
        object.__setattr__(self, "value", normalised)

    @property
    def domain(self) -> str:
        return self.value.rpartition("@")[2]

    def __str__(self) -> str:
        return self.value
