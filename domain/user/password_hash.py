"""PasswordHash (PEC 3.3.1): an opaque hash string (Argon2id, made outside the domain)."""

from __future__ import annotations

from dataclasses import dataclass

from domain.user.errors import InvalidPasswordHash


@dataclass(frozen=True, slots=True, repr=False)
class PasswordHash:
    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not self.value or len(self.value) > 255:
            raise InvalidPasswordHash("password hash must be 1 to 255 characters")

    def __repr__(self) -> str:
        return "PasswordHash('***')"

    __str__ = __repr__
