"""SqlUserRepository on MariaDB and SQLite: round trip, lookups, version check, PII encrypted at rest."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from application.identity.errors import AlreadyRegistered
from domain.shared.errors import ConcurrentModification
from domain.user.deriv_login_id import DerivLoginId
from domain.user.device import Device
from domain.user.email import Email
from domain.user.errors import DerivAccountAlreadyBound
from domain.user.kyc_snapshot import KycSnapshot
from domain.user.password_hash import PasswordHash
from domain.user.phone_number import PhoneNumber
from domain.user.user import User
from persistence.tables import deriv_accounts, domain_events, user_address, user_compliance, user_profile
from persistence.unit_of_work import SqlUnitOfWork
from persistence.user_repository import SqlUserRepository
from security.config import MissingSecret
from security.pii import PiiCipher, PiiDecryptionError

from .conftest import unique_email, unique_phone

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
SETTINGS = {
    "first_name": "Alice",
    "last_name": "Wanjiru",
    "date_of_birth": 631152000,
    "citizen": "ke",
    "country_code": "ke",
    "residence": "Kenya",
    "address_line_1": "1 Moi Avenue SECRETLINE",
    "address_postcode": "00100",
    "address_city": "Nairobi",
    "tax_identification_number": "A012345678Z",
    "tax_residence": "ke",
}


def new_user() -> User:
    return User.register(
        email=Email(unique_email()),
        phone=PhoneNumber(unique_phone()),
        password_hash=PasswordHash("$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA"),
        now=NOW,
    )


def login_id() -> DerivLoginId:
    import secrets

    return DerivLoginId(f"CR{secrets.randbelow(10**8):08d}")


async def test_a_user_round_trips_with_devices_verification_deriv_and_kyc(any_engine: AsyncEngine) -> None:
    user = new_user()
    deriv = login_id()
    async with SqlUnitOfWork(any_engine) as uow:
        await uow.users.add(user)
        await uow.commit()
    async with SqlUnitOfWork(any_engine) as uow:
        loaded = await uow.users.get(user.id)
        assert loaded is not None
        loaded.add_device(Device.register("device-aaaa-1111", "Pixel 8", now=NOW), now=NOW)
        loaded.add_device(Device.register("device-bbbb-2222", "iPhone", now=NOW), now=NOW)
        loaded.verify_phone(now=NOW)
        loaded.verify_email(now=NOW)
        loaded.bind_deriv_account(deriv, now=NOW)
        loaded.take_kyc_snapshot(KycSnapshot.from_get_settings(SETTINGS, NOW), now=NOW)
        await uow.users.save(loaded)
        await uow.users.store_deriv_credentials(
            user.id, token="a1-SECRET-deriv-token", scopes=("read", "payments")
        )
        await uow.commit()

    async with SqlUnitOfWork(any_engine) as uow:
        by_id = await uow.users.get(user.id)
        by_email = await uow.users.find_by_email(user.email)
        by_phone = await uow.users.find_by_phone(user.phone)
        by_deriv = await uow.users.find_by_deriv_login_id(deriv)
        token = await uow.users.load_deriv_token(user.id)
    assert by_id is not None and by_email is not None and by_phone is not None and by_deriv is not None
    assert by_id.id == by_email.id == by_phone.id == by_deriv.id == user.id
    assert [d.device_id for d in by_id.devices] == ["device-aaaa-1111", "device-bbbb-2222"]
    assert by_id.phone_verified and by_id.email_verified
    assert by_id.deriv_login_id == deriv
    assert by_id.kyc == KycSnapshot.from_get_settings(SETTINGS, NOW)
    assert by_id.kyc is not None and by_id.kyc.residence == "ke"
    assert by_id.version == user.version + 6
    assert token == "a1-SECRET-deriv-token"

    # a device removed goes; the other stays
    async with SqlUnitOfWork(any_engine) as uow:
        again = await uow.users.get(user.id)
        assert again is not None
        again.remove_device("device-aaaa-1111", now=NOW)
        await uow.users.save(again)
        await uow.commit()
    async with SqlUnitOfWork(any_engine) as uow:
        final = await uow.users.get(user.id)
    assert final is not None and [d.device_id for d in final.devices] == ["device-bbbb-2222"]

    async with any_engine.connect() as connection:
        events = (
            (
                await connection.execute(
                    select(domain_events.c.event_type).where(domain_events.c.aggregate_id == str(user.id))
                )
            )
            .scalars()
            .all()
        )
    assert sorted(events) == sorted(
        [
            "UserRegistered",
            "DeviceAdded",
            "DeviceAdded",
            "PhoneVerified",
            "EmailVerified",
            "DerivAccountBound",
            "KycSnapshotTaken",
            "DeviceRemoved",
        ]
    )


async def test_sensitive_kyc_fields_and_the_deriv_token_are_encrypted_at_rest(
    any_engine: AsyncEngine,
) -> None:
    user = new_user()
    async with SqlUnitOfWork(any_engine) as uow:
        await uow.users.add(user)
        user.bind_deriv_account(login_id(), now=NOW)
        user.take_kyc_snapshot(KycSnapshot.from_get_settings(SETTINGS, NOW), now=NOW)
        await uow.users.save(user)
        await uow.users.store_deriv_credentials(user.id, token="a1-SECRET-deriv-token", scopes=("read",))
        await uow.commit()
    async with any_engine.connect() as connection:
        rows = []
        for table in (user_profile, user_address, user_compliance, deriv_accounts):
            rows.append(
                (await connection.execute(select(table).where(table.c.user_id == user.id.value))).one()
            )
    raw = repr(rows).encode() + b"".join(v for r in rows for v in r if isinstance(v, bytes))
    for secret in (b"SECRETLINE", b"A012345678Z", b"631152000", b"00100", b"a1-SECRET-deriv-token"):
        assert secret not in raw
    profile, address, compliance, account = rows
    assert profile.first_name == "Alice" and address.country_code == "ke" and address.city == "Nairobi"
    assert compliance.kyc_status == "ACCEPTABLE"
    assert {profile.pii_key_id, address.pii_key_id, compliance.pii_key_id, account.token_key_id} == {"dev"}

    # a ciphertext copied into another user's row does not decrypt (bound by associated data)
    cipher = PiiCipher.configured("", production=False)
    with pytest.raises(PiiDecryptionError):
        cipher.decrypt(profile.date_of_birth_enc, aad="user_profile.date_of_birth_enc:someone-else")
    assert (
        cipher.decrypt(profile.date_of_birth_enc, aad=f"user_profile.date_of_birth_enc:{user.id}")
        == "631152000"
    )


async def test_key_rotation_reads_old_rows_and_reencrypts_them(engine: AsyncEngine) -> None:
    old = PiiCipher({"k-old": b"o" * 32}, "k-old")
    both = PiiCipher({"k-new": b"n" * 32, "k-old": b"o" * 32}, "k-new")
    only_new = PiiCipher({"k-new": b"n" * 32}, "k-new")
    user = new_user()
    async with engine.begin() as connection:
        repo = SqlUserRepository(connection, cipher=old)
        await repo.add(user)
        user.bind_deriv_account(login_id(), now=NOW)
        user.take_kyc_snapshot(KycSnapshot.from_get_settings(SETTINGS, NOW), now=NOW)
        await repo.save(user)
        await repo.store_deriv_credentials(user.id, token="tok-rotate-me", scopes=("read",))
    async with engine.connect() as connection:
        with pytest.raises(PiiDecryptionError):
            await SqlUserRepository(connection, cipher=only_new).get(user.id)
    async with engine.begin() as connection:
        repo = SqlUserRepository(connection, cipher=both)
        assert (await repo.get(user.id)) is not None
        assert await repo.reencrypt(user.id) is True
        assert await repo.reencrypt(user.id) is False  # nothing left on the old key
    async with engine.connect() as connection:
        repo = SqlUserRepository(connection, cipher=only_new)
        loaded = await repo.get(user.id)
        assert (
            loaded is not None
            and loaded.kyc is not None
            and loaded.kyc.tax_identification_number == "A012345678Z"
        )
        assert await repo.load_deriv_token(user.id) == "tok-rotate-me"
        key_ids = (
            await connection.execute(
                select(user_profile.c.pii_key_id, deriv_accounts.c.token_key_id)
                .join(deriv_accounts, deriv_accounts.c.user_id == user_profile.c.user_id)
                .where(user_profile.c.user_id == user.id.value)
            )
        ).one()
    assert tuple(key_ids) == ("k-new", "k-new")


async def test_the_version_check_refuses_a_stale_save(engine: AsyncEngine) -> None:
    user = new_user()
    async with SqlUnitOfWork(engine) as uow:
        await uow.users.add(user)
        await uow.commit()
    async with SqlUnitOfWork(engine) as first, SqlUnitOfWork(engine) as second:
        a = await first.users.get(user.id)
        b = await second.users.get(user.id)
        assert a is not None and b is not None
        a.verify_email(now=NOW)
        await first.users.save(a)
        await first.commit()
        b.verify_phone(now=NOW)
        with pytest.raises(ConcurrentModification):
            await second.users.save(b)


async def test_the_database_keeps_emails_phones_and_deriv_accounts_unique(engine: AsyncEngine) -> None:
    first, second = new_user(), new_user()
    shared = login_id()
    async with SqlUnitOfWork(engine) as uow:
        await uow.users.add(first)
        await uow.users.add(second)
        first.bind_deriv_account(shared, now=NOW)
        await uow.users.save(first)
        await uow.commit()
    copy = User.register(
        email=first.email, phone=PhoneNumber(unique_phone()), password_hash=first.password_hash
    )
    async with SqlUnitOfWork(engine) as uow:
        with pytest.raises(AlreadyRegistered):
            await uow.users.add(copy)
    async with SqlUnitOfWork(engine) as uow:
        other = await uow.users.get(second.id)
        assert other is not None
        other.bind_deriv_account(shared, now=NOW)
        with pytest.raises(DerivAccountAlreadyBound):
            await uow.users.save(other)


def test_pii_keys_come_from_configuration_and_production_has_no_default() -> None:
    key = PiiCipher.generate_key()
    cipher = PiiCipher.configured(f"k2:{key},k1:{base64.b64encode(b'x' * 32).decode()}", production=True)
    assert cipher.current_key_id == "k2"
    blob = cipher.encrypt("hello", aad="t")
    assert PiiCipher.key_id_of(blob) == "k2" and cipher.decrypt(blob, aad="t") == "hello"
    with pytest.raises(MissingSecret):
        PiiCipher.configured("", production=True)
    with pytest.raises(ValueError):
        PiiCipher.configured("k1:" + base64.b64encode(b"short").decode(), production=False)
    assert "x" * 8 not in repr(cipher)
    assert timedelta(0) == timedelta(0)
