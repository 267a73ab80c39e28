"""Ports of the identity context, implemented by persistence (PEC 7)."""

from __future__ import annotations

from typing import Protocol

from domain.shared.ids import UserId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.email import Email
from domain.user.phone_number import PhoneNumber
from domain.user.user import User


class UserRepository(Protocol):
    async def add(self, user: User) -> None:
        """Insert a new user and its pending events (outbox) in one database transaction."""
        ...

    async def get(self, user_id: UserId) -> User | None: ...

    async def find_by_email(self, email: Email) -> User | None: ...

    async def find_by_phone(self, phone: PhoneNumber) -> User | None: ...

    async def find_by_deriv_login_id(self, login_id: DerivLoginId) -> User | None: ...

    async def save(self, user: User) -> None:
        """Update with an optimistic version check (ConcurrentModification) plus pending events."""
        ...
