"""UserRepository on SQLAlchemy Core: the User aggregate across its tables (PEC 3.3.1, 3.4.1).

users (identity core) + user_devices + user_phone_verification + deriv_accounts (the one USD
account) + user_compliance (the KycSnapshot as ONE encrypted snapshot, plus its status) +
user_profile and user_address (split fields derived from the snapshot, for queries; sensitive
ones encrypted). The snapshot in user_compliance.kyc_snapshot_enc is authoritative on load.

PII at rest (date of birth, tax id, address lines, postcode, the whole snapshot, the Deriv
token) is AES-256-GCM with the key id beside it (pii_key_id / token_key_id) and inside each
ciphertext; the associated data binds a ciphertext to its table, column and user.
Statements are built once at import; writes check the version read (optimistic).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from application.identity.errors import AlreadyRegistered, DerivAccountNotBound
from application.identity.ports import DerivCredentials
from application.unit_of_work import EventSource
from domain.shared.clock import Clock, SystemClock
from domain.shared.errors import ConcurrentModification
from domain.shared.ids import DeviceId, UserId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.device import Device
from domain.user.email import Email
from domain.user.errors import DerivAccountAlreadyBound
from domain.user.kyc_snapshot import KycSnapshot
from domain.user.password_hash import PasswordHash
from domain.user.phone_number import PhoneNumber
from domain.user.user import User
from persistence.tables import (
    deriv_accounts,
    user_address,
    user_compliance,
    user_devices,
    user_phone_verification,
    user_profile,
    users,
)
from security.pii import PiiCipher, default_cipher

DERIV_CURRENCY = "USD"
KYC_NONE, KYC_ACCEPTABLE, KYC_INCOMPLETE = "NONE", "ACCEPTABLE", "INCOMPLETE"

_upv, _da, _uc = user_phone_verification, deriv_accounts, user_compliance
_SELECT_USER = select(
    users,
    _upv.c.verified.label("pv_verified"),
    _upv.c.phone.label("pv_phone"),
    _da.c.deriv_login_id,
    _uc.c.kyc_snapshot_enc,
).select_from(
    users.outerjoin(_upv, _upv.c.user_id == users.c.id)
    .outerjoin(_da, and_(_da.c.user_id == users.c.id, _da.c.currency == DERIV_CURRENCY))
    .outerjoin(_uc, _uc.c.user_id == users.c.id)
)
_BY_ID = _SELECT_USER.where(users.c.id == bindparam("user_id"))
_BY_EMAIL = _SELECT_USER.where(users.c.email == bindparam("email"))
_BY_PHONE = _SELECT_USER.where(users.c.phone == bindparam("phone"))
_BY_DERIV = _SELECT_USER.where(_da.c.deriv_login_id == bindparam("login_id"))
_DEVICES = (
    select(user_devices)
    .where(user_devices.c.user_id == bindparam("user_id"))
    .order_by(user_devices.c.added_at)
)

_INSERT_USER = insert(users)
_INSERT_DEVICE = insert(user_devices)
_INSERT_PHONE = insert(user_phone_verification)
_INSERT_DERIV = insert(deriv_accounts)
_INSERT_COMPLIANCE = insert(user_compliance)
_INSERT_PROFILE = insert(user_profile)
_INSERT_ADDRESS = insert(user_address)
_UPDATE_USER = (
    update(users)
    .where(users.c.id == bindparam("b_id"), users.c.version == bindparam("b_old_version"))
    .values(
        email=bindparam("email"),
        phone=bindparam("phone"),
        password_hash=bindparam("password_hash"),
        email_verified=bindparam("email_verified"),
        version=bindparam("version"),
        updated_at=bindparam("updated_at"),
    )
)
_DELETE_DEVICE = delete(user_devices).where(
    user_devices.c.user_id == bindparam("b_user_id"), user_devices.c.device_id == bindparam("b_device_id")
)
_UPDATE_DEVICE_SEEN = (
    update(user_devices)
    .where(
        user_devices.c.user_id == bindparam("b_user_id"), user_devices.c.device_id == bindparam("b_device_id")
    )
    .values(last_seen_at=bindparam("last_seen_at"), name=bindparam("name"))
)
_UPDATE_PHONE = (
    update(user_phone_verification)
    .where(user_phone_verification.c.user_id == bindparam("b_user_id"))
    .values(
        phone=bindparam("phone"),
        verified=bindparam("verified"),
        verified_at=bindparam("verified_at"),
        updated_at=bindparam("updated_at"),
    )
)
_UPDATE_COMPLIANCE = (
    update(user_compliance)
    .where(user_compliance.c.user_id == bindparam("b_user_id"))
    .values(
        kyc_snapshot_enc=bindparam("kyc_snapshot_enc"),
        kyc_taken_at=bindparam("kyc_taken_at"),
        kyc_status=bindparam("kyc_status"),
        tax_residence=bindparam("tax_residence"),
        tax_identification_number_enc=bindparam("tax_identification_number_enc"),
        pii_key_id=bindparam("pii_key_id"),
        updated_at=bindparam("updated_at"),
    )
)
_UPDATE_PROFILE = (
    update(user_profile)
    .where(user_profile.c.user_id == bindparam("b_user_id"))
    .values(
        first_name=bindparam("first_name"),
        last_name=bindparam("last_name"),
        date_of_birth_enc=bindparam("date_of_birth_enc"),
        citizen=bindparam("citizen"),
        place_of_birth=bindparam("place_of_birth"),
        pii_key_id=bindparam("pii_key_id"),
        updated_at=bindparam("updated_at"),
    )
)
_UPDATE_ADDRESS = (
    update(user_address)
    .where(user_address.c.user_id == bindparam("b_user_id"))
    .values(
        address_line_1_enc=bindparam("address_line_1_enc"),
        address_line_2_enc=bindparam("address_line_2_enc"),
        city=bindparam("city"),
        state=bindparam("state"),
        postcode_enc=bindparam("postcode_enc"),
        country_code=bindparam("country_code"),
        pii_key_id=bindparam("pii_key_id"),
        updated_at=bindparam("updated_at"),
    )
)
_DERIV_WHERE = and_(_da.c.user_id == bindparam("b_user_id"), _da.c.currency == DERIV_CURRENCY)
_UPDATE_DERIV_TOKEN = (
    update(deriv_accounts)
    .where(_DERIV_WHERE)
    .values(
        token_enc=bindparam("token_enc"),
        token_key_id=bindparam("token_key_id"),
        scopes=bindparam("scopes"),
        refresh_token_enc=bindparam("refresh_token_enc"),
        token_expires_at=bindparam("token_expires_at"),
        updated_at=bindparam("updated_at"),
    )
)
# A move to the new API re-addresses the one USD account row; the v3 token goes with the old address.
_MOVE_DERIV = (
    update(deriv_accounts)
    .where(_DERIV_WHERE)
    .values(
        deriv_login_id=bindparam("deriv_login_id"),
        token_enc=None,
        token_key_id=None,
        refresh_token_enc=None,
        token_expires_at=None,
        scopes="",
        updated_at=bindparam("updated_at"),
    )
)
_SELECT_DERIV_TOKEN = select(_da.c.token_enc).where(_DERIV_WHERE)
_SELECT_DERIV_CREDENTIALS = select(
    _da.c.token_enc, _da.c.refresh_token_enc, _da.c.token_expires_at, _da.c.scopes
).where(_DERIV_WHERE)
_SELECT_PII_KEYS = (
    select(
        _uc.c.pii_key_id.label("compliance"),
        user_profile.c.pii_key_id.label("profile"),
        user_address.c.pii_key_id.label("address"),
    )
    .select_from(
        _uc.join(user_profile, user_profile.c.user_id == _uc.c.user_id).join(
            user_address, user_address.c.user_id == _uc.c.user_id
        )
    )
    .where(_uc.c.user_id == bindparam("b_user_id"))
)


def aad(column: str, user_id: UserId) -> str:
    """Associated data: a ciphertext only decrypts in its own column of its own user's row."""
    return f"{column}:{user_id}"


def snapshot_to_json(snapshot: KycSnapshot) -> str:
    data: dict[str, Any] = {f.name: getattr(snapshot, f.name) for f in dataclasses.fields(snapshot)}
    data["taken_at"] = snapshot.taken_at.isoformat()
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def snapshot_from_json(text: str) -> KycSnapshot:
    data = json.loads(text)
    data["taken_at"] = datetime.fromisoformat(data["taken_at"])
    known = {f.name for f in dataclasses.fields(KycSnapshot)}
    return KycSnapshot(**{k: v for k, v in data.items() if k in known})


def _cut(value: str | None, length: int) -> str | None:
    return None if value is None else value[:length]


@dataclass(frozen=True, slots=True)
class _Loaded:
    version: int
    devices: dict[str, Device]
    phone: str
    phone_verified: bool
    deriv_login_id: DerivLoginId | None
    kyc: KycSnapshot | None


class SqlUserRepository:
    """Implements domain.user.ports.UserRepository and application.identity.ports.IdentityUserRepository."""

    def __init__(
        self,
        connection: AsyncConnection,
        track: Callable[[EventSource], None] | None = None,
        cipher: PiiCipher | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._connection = connection
        self._track = track or (lambda _source: None)
        self._cipher = cipher or default_cipher()
        self._clock = clock or SystemClock()  # the unit of work's: stamps what the rows do not carry
        self._loaded: dict[UserId, _Loaded] = {}

    # --- reading --------------------------------------------------------------------------

    async def get(self, user_id: UserId) -> User | None:
        return await self._load(_BY_ID, {"user_id": user_id.value})

    async def find_by_email(self, email: Email) -> User | None:
        return await self._load(_BY_EMAIL, {"email": email.value})

    async def find_by_phone(self, phone: PhoneNumber) -> User | None:
        return await self._load(_BY_PHONE, {"phone": phone.value})

    async def find_by_deriv_login_id(self, login_id: DerivLoginId) -> User | None:
        return await self._load(_BY_DERIV, {"login_id": login_id.value})

    async def _load(self, statement: Any, params: dict[str, Any]) -> User | None:
        row = (await self._connection.execute(statement, params)).first()
        if row is None:
            return None
        device_rows = (await self._connection.execute(_DEVICES, {"user_id": row.id})).all()
        user = user_from_row(row, tuple(_device_from_row(d) for d in device_rows), self._cipher)
        self._remember(user)
        return user

    def _remember(self, user: User) -> None:
        self._loaded[user.id] = _Loaded(
            version=user.version,
            devices={d.device_id: d for d in user.devices},
            phone=user.phone.value,
            phone_verified=user.phone_verified,
            deriv_login_id=user.deriv_login_id,
            kyc=user.kyc,
        )

    # --- writing --------------------------------------------------------------------------

    async def add(self, user: User) -> None:
        uid = user.id.value
        at = user.updated_at
        try:
            await self._connection.execute(
                _INSERT_USER,
                {
                    "id": uid,
                    "email": user.email.value,
                    "phone": user.phone.value,
                    "password_hash": user.password_hash.value,
                    "email_verified": user.email_verified,
                    "status": "ACTIVE",
                    "roles": "user",
                    "version": user.version,
                    "created_at": user.created_at,
                    "updated_at": at,
                },
            )
        except IntegrityError as exc:
            raise AlreadyRegistered("an account with this email or phone already exists") from exc
        stamps = {"user_id": uid, "created_at": user.created_at, "updated_at": at}
        await self._connection.execute(
            _INSERT_PHONE,
            {
                **stamps,
                "phone": user.phone.value,
                "verified": user.phone_verified,
                "verified_at": at if user.phone_verified else None,
            },
        )
        await self._connection.execute(
            _INSERT_COMPLIANCE, {**stamps, "kyc_status": KYC_NONE, "aml_risk": "UNASSESSED"}
        )
        await self._connection.execute(_INSERT_PROFILE, stamps)
        await self._connection.execute(_INSERT_ADDRESS, stamps)
        for device in user.devices:
            await self._connection.execute(_INSERT_DEVICE, _device_row(user.id, device))
        if user.deriv_login_id is not None:
            await self._insert_deriv(user)
        if user.kyc is not None:
            await self._write_kyc(user.id, user.kyc, at)
        self._remember(user)
        self._track(user)

    async def save(self, user: User) -> None:
        loaded = self._loaded.get(user.id)
        if loaded is None:
            raise ConcurrentModification(f"user {user.id} was not loaded in this unit of work")
        uid = user.id.value
        if user.version != loaded.version:
            result = await self._connection.execute(
                _UPDATE_USER,
                {
                    "b_id": uid,
                    "b_old_version": loaded.version,
                    "email": user.email.value,
                    "phone": user.phone.value,
                    "password_hash": user.password_hash.value,
                    "email_verified": user.email_verified,
                    "version": user.version,
                    "updated_at": user.updated_at,
                },
            )
            if result.rowcount != 1:
                raise ConcurrentModification(f"user {user.id} changed since it was read")
        current = {d.device_id: d for d in user.devices}
        for device_id in loaded.devices.keys() - current.keys():
            await self._connection.execute(_DELETE_DEVICE, {"b_user_id": uid, "b_device_id": device_id})
        for device_id, device in current.items():
            before = loaded.devices.get(device_id)
            if before is None:
                await self._connection.execute(_INSERT_DEVICE, _device_row(user.id, device))
            elif before != device:
                await self._connection.execute(
                    _UPDATE_DEVICE_SEEN,
                    {
                        "b_user_id": uid,
                        "b_device_id": device_id,
                        "last_seen_at": device.last_seen_at,
                        "name": device.name,
                    },
                )
        if user.phone_verified != loaded.phone_verified or user.phone.value != loaded.phone:
            await self._connection.execute(
                _UPDATE_PHONE,
                {
                    "b_user_id": uid,
                    "phone": user.phone.value,
                    "verified": user.phone_verified,
                    "verified_at": user.updated_at if user.phone_verified else None,
                    "updated_at": user.updated_at,
                },
            )
        if user.deriv_login_id is not None and loaded.deriv_login_id is None:
            await self._insert_deriv(user)
        elif user.deriv_login_id is not None and user.deriv_login_id != loaded.deriv_login_id:
            await self._move_deriv(user)
        if user.kyc is not None and user.kyc is not loaded.kyc:
            await self._write_kyc(user.id, user.kyc, user.updated_at)
        self._remember(user)
        self._track(user)

    async def _insert_deriv(self, user: User) -> None:
        assert user.deriv_login_id is not None
        try:
            async with self._connection.begin_nested():
                await self._connection.execute(
                    _INSERT_DERIV,
                    {
                        "id": DeviceId.new().value,  # any UUIDv7
                        "user_id": user.id.value,
                        "deriv_login_id": user.deriv_login_id.value,
                        "currency": DERIV_CURRENCY,
                        "token_enc": None,
                        "token_key_id": None,
                        "scopes": "",
                        "created_at": user.updated_at,
                        "updated_at": user.updated_at,
                    },
                )
        except IntegrityError as exc:
            raise DerivAccountAlreadyBound(
                f"Deriv account {user.deriv_login_id} is already bound to a PenPay user"
            ) from exc

    async def _move_deriv(self, user: User) -> None:
        assert user.deriv_login_id is not None
        try:
            async with self._connection.begin_nested():
                await self._connection.execute(
                    _MOVE_DERIV,
                    {
                        "b_user_id": user.id.value,
                        "deriv_login_id": user.deriv_login_id.value,
                        "updated_at": user.updated_at,
                    },
                )
        except IntegrityError as exc:
            raise DerivAccountAlreadyBound(
                f"Deriv account {user.deriv_login_id} is already bound to a PenPay user"
            ) from exc

    async def _write_kyc(self, user_id: UserId, kyc: KycSnapshot, at: datetime) -> None:
        enc = self._cipher.encrypt_optional
        kid = self._cipher.current_key_id
        uid = user_id.value
        status = KYC_ACCEPTABLE if kyc.is_acceptable() else KYC_INCOMPLETE
        await self._connection.execute(
            _UPDATE_COMPLIANCE,
            {
                "b_user_id": uid,
                "kyc_snapshot_enc": enc(
                    snapshot_to_json(kyc), aad=aad("user_compliance.kyc_snapshot_enc", user_id)
                ),
                "kyc_taken_at": kyc.taken_at,
                "kyc_status": status,
                "tax_residence": _cut(kyc.tax_residence, 64),
                "tax_identification_number_enc": enc(
                    kyc.tax_identification_number,
                    aad=aad("user_compliance.tax_identification_number_enc", user_id),
                ),
                "pii_key_id": kid,
                "updated_at": at,
            },
        )
        await self._connection.execute(
            _UPDATE_PROFILE,
            {
                "b_user_id": uid,
                "first_name": _cut(kyc.first_name, 100),
                "last_name": _cut(kyc.last_name, 100),
                "date_of_birth_enc": enc(
                    None if kyc.date_of_birth is None else str(kyc.date_of_birth),
                    aad=aad("user_profile.date_of_birth_enc", user_id),
                ),
                "citizen": _cut(kyc.citizen, 2),
                "place_of_birth": _cut(kyc.place_of_birth, 2),
                "pii_key_id": kid,
                "updated_at": at,
            },
        )
        await self._connection.execute(
            _UPDATE_ADDRESS,
            {
                "b_user_id": uid,
                "address_line_1_enc": enc(
                    kyc.address_line_1, aad=aad("user_address.address_line_1_enc", user_id)
                ),
                "address_line_2_enc": enc(
                    kyc.address_line_2, aad=aad("user_address.address_line_2_enc", user_id)
                ),
                "city": _cut(kyc.address_city, 100),
                "state": _cut(kyc.address_state, 100),
                "postcode_enc": enc(kyc.address_postcode, aad=aad("user_address.postcode_enc", user_id)),
                "country_code": _cut(kyc.residence, 2),
                "pii_key_id": kid,
                "updated_at": at,
            },
        )

    # --- Deriv credentials --------------------------------------------------------------------

    async def store_deriv_credentials(
        self,
        user_id: UserId,
        *,
        token: str,
        scopes: tuple[str, ...],
        refresh_token: str | None = None,
        expires_at: datetime | None = None,
    ) -> None:
        result = await self._connection.execute(
            _UPDATE_DERIV_TOKEN,
            {
                "b_user_id": user_id.value,
                "token_enc": self._cipher.encrypt(token, aad=aad("deriv_accounts.token_enc", user_id)),
                "token_key_id": self._cipher.current_key_id,
                "scopes": " ".join(sorted(scopes))[:255],
                "refresh_token_enc": self._cipher.encrypt_optional(
                    refresh_token, aad=aad("deriv_accounts.refresh_token_enc", user_id)
                ),
                "token_expires_at": expires_at,
                "updated_at": self._clock.now(),
            },
        )
        if result.rowcount != 1:
            raise DerivAccountNotBound("no Deriv account is bound to this user")

    async def load_deriv_token(self, user_id: UserId) -> str | None:
        blob = (
            await self._connection.execute(_SELECT_DERIV_TOKEN, {"b_user_id": user_id.value})
        ).scalar_one_or_none()
        if blob is None:
            return None
        return self._cipher.decrypt(blob, aad=aad("deriv_accounts.token_enc", user_id))

    async def load_deriv_credentials(self, user_id: UserId) -> DerivCredentials | None:
        row = (
            await self._connection.execute(_SELECT_DERIV_CREDENTIALS, {"b_user_id": user_id.value})
        ).first()
        if row is None or row.token_enc is None:
            return None
        return DerivCredentials(
            token=self._cipher.decrypt(row.token_enc, aad=aad("deriv_accounts.token_enc", user_id)),
            scopes=tuple(row.scopes.split()),
            refresh_token=self._cipher.decrypt_optional(
                row.refresh_token_enc, aad=aad("deriv_accounts.refresh_token_enc", user_id)
            ),
            expires_at=row.token_expires_at,
        )

    # --- key rotation -------------------------------------------------------------------------

    async def reencrypt(self, user_id: UserId) -> bool:
        """Rewrite this user's encrypted fields with the current key when any uses an older one."""
        user = await self.get(user_id)
        if user is None:
            return False
        current = self._cipher.current_key_id
        keys = (await self._connection.execute(_SELECT_PII_KEYS, {"b_user_id": user_id.value})).first()
        credentials = await self.load_deriv_credentials(user_id)
        token_row = (
            await self._connection.execute(
                select(_da.c.token_key_id).where(_DERIV_WHERE), {"b_user_id": user_id.value}
            )
        ).first()
        changed = False
        if (
            user.kyc is not None
            and keys is not None
            and {keys.compliance, keys.profile, keys.address} != {current}
        ):
            await self._write_kyc(user_id, user.kyc, user.updated_at)
            changed = True
        if credentials is not None and token_row is not None and token_row.token_key_id != current:
            await self.store_deriv_credentials(
                user_id,
                token=credentials.token,
                scopes=credentials.scopes,
                refresh_token=credentials.refresh_token,
                expires_at=credentials.expires_at,
            )
            changed = True
        return changed


def user_from_row(row: Row[Any], devices: tuple[Device, ...], cipher: PiiCipher) -> User:
    """The User of a row of `_SELECT_USER`'s columns (the snapshot decrypted) and its devices."""
    user_id = UserId(row.id)
    kyc = None
    if row.kyc_snapshot_enc is not None:
        kyc = snapshot_from_json(
            cipher.decrypt(row.kyc_snapshot_enc, aad=aad("user_compliance.kyc_snapshot_enc", user_id))
        )
    phone = PhoneNumber(row.phone)
    # Verified only for the number that was verified (a changed number needs a new code).
    phone_verified = bool(row.pv_verified) and row.pv_phone == phone.value
    return User.reconstitute(
        id=user_id,
        email=Email(row.email),
        phone=phone,
        password_hash=PasswordHash(row.password_hash),
        devices=devices,
        phone_verified=phone_verified,
        email_verified=bool(row.email_verified),
        deriv_login_id=DerivLoginId(row.deriv_login_id) if row.deriv_login_id else None,
        kyc=kyc,
        version=int(row.version),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _device_row(user_id: UserId, device: Device) -> dict[str, Any]:
    return {
        "id": device.id.value,
        "user_id": user_id.value,
        "device_id": device.device_id,
        "name": device.name,
        "added_at": device.added_at,
        "last_seen_at": device.last_seen_at,
    }


def _device_from_row(row: Row[Any]) -> Device:
    return Device(
        id=DeviceId(row.id),
        device_id=row.device_id,
        name=row.name,
        added_at=row.added_at,
        last_seen_at=row.last_seen_at,
    )
