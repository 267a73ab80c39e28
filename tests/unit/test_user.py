from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from domain.user.device import Device
from domain.user.errors import (
    DerivAccountAlreadyBound,
    DeviceLimitReached,
    DeviceNotFound,
    InvalidDerivLoginId,
    InvalidDevice,
    VirtualAccountRefused,
)
from domain.user.events import (
    DerivAccountBound,
    DerivAccountMoved,
    DeviceAdded,
    DeviceRemoved,
    EmailVerified,
    PhoneVerified,
    UserRegistered,
)
from domain.user.user import User
from domain.user.value_objects import DerivLoginId, Email, KycSnapshot, PasswordHash, PhoneNumber

pytestmark = pytest.mark.unit


def _user(now: datetime) -> User:
    user = User.register(
        email=Email("a@example.com"),
        phone=PhoneNumber("+254712345678"),
        password_hash=PasswordHash("$argon2id$hash"),
        now=now,
    )
    return user


def _device(n: int, now: datetime) -> Device:
    return Device.register(f"device-{n:04d}", f"Phone {n}", now=now)


def test_register_raises_user_registered(now: datetime) -> None:
    user = _user(now)
    events = user.pull_events()
    assert [type(e) for e in events] == [UserRegistered]
    assert events[0].payload()["email"] == "a@example.com"
    assert user.id.value.version == 7
    assert (user.version, user.phone_verified, user.email_verified) == (1, False, False)


def test_two_devices_are_allowed(now: datetime) -> None:
    user = _user(now)
    user.add_device(_device(1, now), now=now)
    user.add_device(_device(2, now), now=now)
    assert [d.device_id for d in user.devices] == ["device-0001", "device-0002"]
    assert [type(e) for e in user.pull_events()][1:] == [DeviceAdded, DeviceAdded]


def test_third_device_is_refused_with_the_way_out_in_the_message(now: datetime) -> None:
    user = _user(now)
    user.add_device(_device(1, now), now=now)
    user.add_device(_device(2, now), now=now)
    with pytest.raises(DeviceLimitReached, match="remove one of them"):
        user.add_device(_device(3, now), now=now)
    assert len(user.devices) == 2


def test_removing_a_device_makes_room(now: datetime) -> None:
    user = _user(now)
    user.add_device(_device(1, now), now=now)
    user.add_device(_device(2, now), now=now)
    user.remove_device("device-0001", now=now)
    user.add_device(_device(3, now), now=now)
    assert [d.device_id for d in user.devices] == ["device-0002", "device-0003"]
    assert DeviceRemoved in [type(e) for e in user.pull_events()]


def test_removing_an_unknown_device_is_refused(now: datetime) -> None:
    with pytest.raises(DeviceNotFound):
        _user(now).remove_device("device-9999", now=now)


def test_a_known_device_coming_back_is_seen_not_added(now: datetime) -> None:
    user = _user(now)
    user.add_device(_device(1, now), now=now)
    user.add_device(_device(2, now), now=now)
    later = now + timedelta(days=1)
    user.add_device(_device(1, later), now=later)
    assert len(user.devices) == 2
    assert user.devices[0].last_seen_at == later


@pytest.mark.parametrize("device_id", ["short", "x" * 129, "has space in it"])
def test_device_ids_are_8_to_128_visible_characters(device_id: str, now: datetime) -> None:
    with pytest.raises(InvalidDevice):
        Device.register(device_id, "Phone", now=now)


def test_verifications_raise_once(now: datetime) -> None:
    user = _user(now)
    user.pull_events()
    user.verify_phone(now=now)
    user.verify_phone(now=now)
    user.verify_email(now=now)
    assert user.phone_verified and user.email_verified
    assert [type(e) for e in user.pull_events()] == [PhoneVerified, EmailVerified]


def test_one_user_one_real_deriv_account(now: datetime) -> None:
    user = _user(now)
    user.pull_events()
    with pytest.raises(VirtualAccountRefused):
        user.bind_deriv_account(DerivLoginId("VRTC1"), now=now)
    user.bind_deriv_account(DerivLoginId("CR1"), now=now)
    user.bind_deriv_account(DerivLoginId("cr1"), now=now)  # same account: no-op
    with pytest.raises(DerivAccountAlreadyBound):
        user.bind_deriv_account(DerivLoginId("CR2"), now=now)
    assert [type(e) for e in user.pull_events()] == [DerivAccountBound]


def test_a_new_api_account_is_its_nickname_and_keeps_its_case() -> None:
    rest = DerivLoginId.rest("Alice_W")
    assert rest.value == "@Alice_W" and rest.is_rest and rest.nickname == "Alice_W"
    assert DerivLoginId(" @Alice_W ") == rest and not rest.is_virtual
    assert not DerivLoginId("CR1").is_rest and DerivLoginId("CR1").nickname == ""
    for bad in ("@", "@has space", "@" + "x" * 32, "@a/b"):
        with pytest.raises(InvalidDerivLoginId):
            DerivLoginId(bad)


def test_a_v3_user_moves_to_one_new_api_account(now: datetime) -> None:
    user = _user(now)
    user.bind_deriv_account(DerivLoginId("CR1"), now=now)
    user.pull_events()
    with pytest.raises(DerivAccountAlreadyBound):
        user.move_deriv_account_to_rest(DerivLoginId("CR2"), now=now)  # a move goes to @nickname
    user.move_deriv_account_to_rest(DerivLoginId.rest("alice"), now=now)
    user.move_deriv_account_to_rest(DerivLoginId.rest("alice"), now=now)  # the same one: no-op
    assert user.deriv_login_id == DerivLoginId.rest("alice")
    moved = user.pull_events()
    assert [type(e) for e in moved] == [DerivAccountMoved]
    assert isinstance(moved[0], DerivAccountMoved) and moved[0].from_login_id == "CR1"
    with pytest.raises(DerivAccountAlreadyBound):
        user.move_deriv_account_to_rest(DerivLoginId.rest("brian"), now=now)
    with pytest.raises(DerivAccountAlreadyBound):
        user.bind_deriv_account(DerivLoginId("CR1"), now=now)  # no way back to v3


def test_kyc_snapshot_replaces_the_previous_one(now: datetime) -> None:
    user = _user(now)
    first = KycSnapshot.from_get_settings({"first_name": "A"}, now)
    second = KycSnapshot.from_get_settings({"first_name": "B"}, now)
    user.take_kyc_snapshot(first, now=now)
    user.take_kyc_snapshot(second, now=now)
    assert user.kyc is second


def test_every_change_bumps_the_version_and_events_carry_it(now: datetime) -> None:
    user = _user(now)
    user.add_device(_device(1, now), now=now)
    user.verify_email(now=now)
    assert user.version == 3
    assert [e.aggregate_version() for e in user.pull_events()] == [1, 2, 3]


def test_password_hash_never_appears_in_the_user_repr(now: datetime) -> None:
    assert "$argon2id$hash" not in repr(_user(now))
