"""Events of the identity context. Payloads carry ids, not personal data, except the
email in UserRegistered (needed to send the verification mail)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.shared.events import DomainEvent
from domain.shared.ids import UserId


@dataclass(frozen=True, slots=True, kw_only=True)
class UserEvent(DomainEvent):
    aggregate_type = "User"

    user_id: UserId
    version: int

    def aggregate_id(self) -> str:
        return str(self.user_id)

    def aggregate_version(self) -> int | None:
        return self.version


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRegistered(UserEvent):
    email: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceAdded(UserEvent):
    device_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRemoved(UserEvent):
    device_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PhoneVerified(UserEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailVerified(UserEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class DerivAccountBound(UserEvent):
    deriv_login_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DerivAccountMoved(UserEvent):
    """A v3 account's user moved to Deriv's new API: the binding changes, the history stays."""

    from_login_id: str
    deriv_login_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KycSnapshotTaken(UserEvent):
    taken_at: datetime
    is_acceptable: bool
