"""User aggregate (PEC 3.3.1): identity, credentials, devices, Deriv binding and KYC."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from domain.shared.clock import require_utc, utc_now
from domain.shared.events import DomainEvent
from domain.shared.ids import UserId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.device import Device
from domain.user.email import Email
from domain.user.errors import DerivAccountAlreadyBound, DeviceLimitReached, DeviceNotFound
from domain.user.events import (
    DerivAccountBound,
    DerivAccountMoved,
    DeviceAdded,
    DeviceRemoved,
    EmailVerified,
    KycSnapshotTaken,
    PhoneVerified,
    UserRegistered,
)
from domain.user.kyc_snapshot import KycSnapshot
from domain.user.password_hash import PasswordHash
from domain.user.phone_number import PhoneNumber

MAX_DEVICES = 2


def _at(now: datetime | None) -> datetime:
    return utc_now() if now is None else require_utc(now, "now")


@dataclass(eq=False, kw_only=True)
class User:
    id: UserId
    email: Email
    phone: PhoneNumber
    password_hash: PasswordHash
    devices: tuple[Device, ...] = ()
    phone_verified: bool = False
    email_verified: bool = False
    deriv_login_id: DerivLoginId | None = None
    kyc: KycSnapshot | None = None
    version: int = 1
    created_at: datetime
    updated_at: datetime
    _pending_events: list[DomainEvent] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.devices = tuple(self.devices)
        self.created_at = require_utc(self.created_at, "created_at")
        self.updated_at = require_utc(self.updated_at, "updated_at")

    # --- creation -------------------------------------------------------------------------

    @classmethod
    def register(
        cls, *, email: Email, phone: PhoneNumber, password_hash: PasswordHash, now: datetime | None = None
    ) -> User:
        at = _at(now)
        user = cls(
            id=UserId.new(),
            email=email,
            phone=phone,
            password_hash=password_hash,
            created_at=at,
            updated_at=at,
        )
        user._record(UserRegistered(user_id=user.id, version=user.version, email=email.value, occurred_at=at))
        return user

    @classmethod
    def reconstitute(
        cls,
        *,
        id: UserId,
        email: Email,
        phone: PhoneNumber,
        password_hash: PasswordHash,
        devices: tuple[Device, ...],
        phone_verified: bool,
        email_verified: bool,
        deriv_login_id: DerivLoginId | None,
        kyc: KycSnapshot | None,
        version: int,
        created_at: datetime,
        updated_at: datetime,
    ) -> User:
        """Rebuild from storage: no rules re-run as events, no events raised."""
        return cls(
            id=id,
            email=email,
            phone=phone,
            password_hash=password_hash,
            devices=devices,
            phone_verified=phone_verified,
            email_verified=email_verified,
            deriv_login_id=deriv_login_id,
            kyc=kyc,
            version=version,
            created_at=created_at,
            updated_at=updated_at,
        )

    # --- behaviour ------------------------------------------------------------------------

    def add_device(self, device: Device, *, now: datetime | None = None) -> Device:
        """Bind a device; a device already bound is just marked as seen."""
        at = _at(now)
        known = self.find_device(device.device_id)
        if known is not None:
            seen = known.seen(at)
            self.devices = tuple(seen if d.device_id == device.device_id else d for d in self.devices)
            self._changed(at)
            return seen
        if len(self.devices) >= MAX_DEVICES:
            raise DeviceLimitReached(
                f"this account is already used on {MAX_DEVICES} devices, the most allowed; "
                "remove one of them (from a signed-in device, or through support) and try again"
            )
        self.devices = (*self.devices, device)
        self._changed(at)
        self._record(
            DeviceAdded(user_id=self.id, version=self.version, device_id=device.device_id, occurred_at=at)
        )
        return device

    def remove_device(self, device_id: str, *, now: datetime | None = None) -> None:
        if self.find_device(device_id) is None:
            raise DeviceNotFound("no such device on this account")
        at = _at(now)
        self.devices = tuple(d for d in self.devices if d.device_id != device_id)
        self._changed(at)
        self._record(
            DeviceRemoved(user_id=self.id, version=self.version, device_id=device_id, occurred_at=at)
        )

    def find_device(self, device_id: str) -> Device | None:
        return next((d for d in self.devices if d.device_id == device_id), None)

    def verify_phone(self, *, now: datetime | None = None) -> None:
        if self.phone_verified:
            return
        at = _at(now)
        self.phone_verified = True
        self._changed(at)
        self._record(PhoneVerified(user_id=self.id, version=self.version, occurred_at=at))

    def verify_email(self, *, now: datetime | None = None) -> None:
        if self.email_verified:
            return
        at = _at(now)
        self.email_verified = True
        self._changed(at)
        self._record(EmailVerified(user_id=self.id, version=self.version, occurred_at=at))

    def bind_deriv_account(self, login_id: DerivLoginId, *, now: datetime | None = None) -> None:
        """Bind the user's one real-money Deriv account; binding the same one again is a no-op."""
        login_id.require_real_money()
        if self.deriv_login_id == login_id:
            return
        if self.deriv_login_id is not None:
            raise DerivAccountAlreadyBound(
                f"this user is already bound to Deriv account {self.deriv_login_id}"
            )
        at = _at(now)
        self.deriv_login_id = login_id
        self._changed(at)
        self._record(
            DerivAccountBound(
                user_id=self.id, version=self.version, deriv_login_id=login_id.value, occurred_at=at
            )
        )

    def move_deriv_account_to_rest(self, rest_id: DerivLoginId, *, now: datetime | None = None) -> None:
        """Deriv moved this user to its new API: bind their new-API account in place of the v3 one.

        Only from a v3 binding (one user, one account: a REST binding is not swapped for another
        user's nickname); the same nickname again is a no-op. Transactions keep the account they
        were made with, so history and the ledger stay as they are."""
        if not rest_id.is_rest:
            raise DerivAccountAlreadyBound("a move goes to a new-API (@nickname) account")
        if self.deriv_login_id is None:
            self.bind_deriv_account(rest_id, now=now)
            return
        if self.deriv_login_id == rest_id:
            return
        if self.deriv_login_id.is_rest:
            raise DerivAccountAlreadyBound(
                f"this user is already bound to Deriv account {self.deriv_login_id}"
            )
        at = _at(now)
        previous, self.deriv_login_id = self.deriv_login_id, rest_id
        self._changed(at)
        self._record(
            DerivAccountMoved(
                user_id=self.id,
                version=self.version,
                from_login_id=previous.value,
                deriv_login_id=rest_id.value,
                occurred_at=at,
            )
        )

    def take_kyc_snapshot(self, snapshot: KycSnapshot, *, now: datetime | None = None) -> None:
        at = _at(now)
        self.kyc = snapshot
        self._changed(at)
        self._record(
            KycSnapshotTaken(
                user_id=self.id,
                version=self.version,
                taken_at=snapshot.taken_at,
                is_acceptable=snapshot.is_acceptable(),
                occurred_at=at,
            )
        )

    def change_password_hash(self, password_hash: PasswordHash, *, now: datetime | None = None) -> None:
        """E.g. a rehash with stronger Argon2 parameters after a successful login."""
        self.password_hash = password_hash
        self._changed(_at(now))

    # --- events -----------------------------------------------------------------------------

    def pull_events(self) -> list[DomainEvent]:
        events, self._pending_events = self._pending_events, []
        return events

    def _changed(self, at: datetime) -> None:
        self.version += 1
        self.updated_at = at

    def _record(self, event: DomainEvent) -> None:
        self._pending_events.append(event)
