"""penpay.auth.v1.AuthService through real stubs: every RPC, its success and its refusals."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from sqlalchemy import select

from penpay.auth.v1 import auth_pb2
from penpay.dev.v1 import dev_pb2
from persistence.tables import deriv_accounts, refresh_tokens, user_phone_verification, users
from security.notify import SmtpNotifier
from security.pii import PiiCipher

from .conftest import (
    CLIENT_TOKEN,
    PASSWORD,
    Gateway,
    Harness,
    StartApi,
    details_of,
    unique_email,
    unique_phone,
)

pytestmark = pytest.mark.integration


async def test_register_then_login_returns_tokens_the_api_accepts(api: Harness) -> None:
    email, phone = unique_email(), unique_phone()
    registered = await api.auth.Register(
        auth_pb2.RegisterRequest(email=email, phone_number=phone, password=PASSWORD)
    )
    session = await api.login(phone)  # by phone as well as by email

    assert session.user_id == registered.user_id
    assert session.token_type == "Bearer"
    assert 0 < session.expires_in <= 15 * 60
    assert session.refresh_expires_in > 24 * 3600
    principal = api.tokens.verify_principal(session.access_token, now=api.clock.now())
    assert principal.subject == registered.user_id and principal.roles == frozenset()
    async with api.core.engine.connect() as connection:
        stored = (await connection.execute(select(users.c.email).where(users.c.email == email))).scalar()
    assert stored == email


async def test_register_refuses_a_taken_email_and_bad_input_with_field_violations(api: Harness) -> None:
    account = await api.new_account()
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await api.auth.Register(
            auth_pb2.RegisterRequest(email=account.email, phone_number=unique_phone(), password=PASSWORD)
        )
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert details_of(taken.value).error_info.reason == "ALREADY_REGISTERED"

    with pytest.raises(grpc.aio.AioRpcError) as weak:
        await api.auth.Register(
            auth_pb2.RegisterRequest(email=unique_email(), phone_number=unique_phone(), password="short")
        )
    assert weak.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    parsed = details_of(weak.value)
    assert parsed.error_info.reason == "WEAK_PASSWORD" and parsed.error_info.domain == "penpay.io"
    assert [v.field for v in parsed.violations] == ["password"]
    assert "short" not in weak.value.details()

    with pytest.raises(grpc.aio.AioRpcError) as phone:
        await api.auth.Register(
            auth_pb2.RegisterRequest(email=unique_email(), phone_number="12345", password=PASSWORD)
        )
    assert phone.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details_of(phone.value).violations] == ["phone_number"]


async def test_login_with_a_wrong_password_is_unauthenticated(api: Harness) -> None:
    account = await api.new_account()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.auth.Login(
            auth_pb2.LoginRequest(
                login=account.email, password="wrong password 1", device_id="device-xyz-1", device_name="x"
            )
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details_of(refused.value).error_info.reason == "INVALID_CREDENTIALS"


async def test_refresh_rotates_and_a_reused_refresh_token_kills_the_session(api: Harness) -> None:
    account = await api.new_account()
    rotated = await api.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=account.refresh_token))
    assert rotated.refresh_token != account.refresh_token and rotated.access_token
    assert rotated.user_id == account.user_id and rotated.device_id == account.device_id

    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await api.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=account.refresh_token))
    assert reused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details_of(reused.value).error_info.reason == "REFRESH_TOKEN_REUSED"
    with pytest.raises(grpc.aio.AioRpcError) as family:  # the whole family is revoked
        await api.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=rotated.refresh_token))
    assert family.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_logout_revokes_the_refresh_token(api: Harness) -> None:
    account = await api.new_account()
    await api.auth.Logout(auth_pb2.LogoutRequest(refresh_token=account.refresh_token), metadata=account.auth)
    with pytest.raises(grpc.aio.AioRpcError) as after:
        await api.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=account.refresh_token))
    assert after.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with api.core.engine.connect() as connection:
        revoked = (await connection.execute(select(refresh_tokens.c.revoked_at))).scalars().all()
    assert revoked and all(r is not None for r in revoked)


async def test_phone_is_verified_with_the_code_sent_by_sms(api: Harness) -> None:
    account = await api.new_account()
    sent = await api.auth.RequestPhoneVerification(
        auth_pb2.RequestPhoneVerificationRequest(), metadata=account.auth
    )
    assert sent.expires_in == 600
    code = await api.latest_code(account, "sms")
    wrong = "000000" if code != "000000" else "111111"

    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await api.auth.VerifyPhone(auth_pb2.VerifyPhoneRequest(phone_number=account.phone, code=wrong))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    parsed = details_of(bad.value)
    assert parsed.error_info.reason == "VERIFICATION_CODE_INVALID"
    assert [v.field for v in parsed.violations] == ["code"]

    await api.auth.VerifyPhone(auth_pb2.VerifyPhoneRequest(phone_number=account.phone, code=code))
    async with api.core.engine.connect() as connection:
        verified = (await connection.execute(select(user_phone_verification.c.verified))).scalars().all()
    assert verified == [True]
    with pytest.raises(grpc.aio.AioRpcError) as again:  # a code works once
        await api.auth.VerifyPhone(auth_pb2.VerifyPhoneRequest(phone_number=account.phone, code=code))
    assert again.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_email_is_verified_with_the_code_sent_by_email(api: Harness) -> None:
    account = await api.new_account()
    sent = await api.auth.RequestEmailVerification(
        auth_pb2.RequestEmailVerificationRequest(), metadata=account.auth
    )
    assert sent.expires_in == 600
    code = await api.latest_code(account, "email")
    await api.auth.VerifyEmail(auth_pb2.VerifyEmailRequest(email=account.email, code=code))
    async with api.core.engine.connect() as connection:
        verified = (
            await connection.execute(select(users.c.email_verified).where(users.c.email == account.email))
        ).scalar()
    assert verified is True


async def test_verifying_an_unknown_contact_answers_like_a_wrong_code(api: Harness) -> None:
    answers = []
    for request in (
        auth_pb2.VerifyPhoneRequest(phone_number=unique_phone(), code="123456"),
        auth_pb2.VerifyEmailRequest(email=unique_email(), code="123456"),
    ):
        call = (
            api.auth.VerifyPhone if isinstance(request, auth_pb2.VerifyPhoneRequest) else api.auth.VerifyEmail
        )
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await call(request)
        answers.append((unknown.value.code(), details_of(unknown.value).error_info.reason))
    assert answers == [(grpc.StatusCode.INVALID_ARGUMENT, "VERIFICATION_CODE_INVALID")] * 2


async def test_devices_are_listed_limited_to_two_and_removed(api: Harness) -> None:
    account = await api.new_account()
    second = await api.login(account.email, "device-second-1")

    listed = await api.auth.ListDevices(auth_pb2.ListDevicesRequest(), metadata=account.auth)
    assert sorted(d.device_id for d in listed.devices) == sorted([account.device_id, "device-second-1"])
    assert [d.device_id for d in listed.devices if d.current] == [account.device_id]
    assert all(d.added_at.seconds > 0 and d.name == "Test phone" for d in listed.devices)

    with pytest.raises(grpc.aio.AioRpcError) as third:
        await api.login(account.email, "device-third-01")
    assert third.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    parsed = details_of(third.value)
    assert parsed.error_info.reason == "DEVICE_LIMIT_REACHED"
    assert [v.field for v in parsed.violations] == ["device_id"]

    await api.auth.RemoveDevice(
        auth_pb2.RemoveDeviceRequest(device_id="device-second-1"), metadata=account.auth
    )
    listed = await api.auth.ListDevices(auth_pb2.ListDevicesRequest(), metadata=account.auth)
    assert [d.device_id for d in listed.devices] == [account.device_id]
    with pytest.raises(grpc.aio.AioRpcError) as signed_out:  # the removed device's session is gone
        await api.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=second.refresh_token))
    assert signed_out.value.code() == grpc.StatusCode.UNAUTHENTICATED

    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await api.auth.RemoveDevice(
            auth_pb2.RemoveDeviceRequest(device_id="device-nope-01"), metadata=account.auth
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert details_of(unknown.value).error_info.reason == "DEVICE_NOT_FOUND"


async def test_bind_deriv_account_through_the_gateway(start_api: StartApi, gateway: Gateway) -> None:
    api = await start_api(gateway=gateway)
    account = await api.new_account()

    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await api.auth.BindDerivAccount(
            auth_pb2.BindDerivAccountRequest(deriv_token="not-a-real-token-42"), metadata=account.auth
        )
    assert bad.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    parsed = details_of(bad.value)
    assert parsed.error_info.reason == "DERIV_BINDING_REFUSED"
    assert [v.field for v in parsed.violations] == ["deriv_token"]
    assert "not-a-real-token-42" not in bad.value.details()

    with pytest.raises(grpc.aio.AioRpcError) as virtual:
        await api.auth.BindDerivAccount(
            auth_pb2.BindDerivAccountRequest(deriv_token="sim-virtual-token"), metadata=account.auth
        )
    assert virtual.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_of(virtual.value).error_info.reason == "VIRTUAL_ACCOUNT_REFUSED"

    bound = await api.auth.BindDerivAccount(
        auth_pb2.BindDerivAccountRequest(deriv_token=CLIENT_TOKEN), metadata=account.auth
    )
    assert bound.deriv_login_id == "CR90000001" and bound.kyc_acceptable
    async with api.core.engine.connect() as connection:
        row = (await connection.execute(select(deriv_accounts))).one()
    assert row.deriv_login_id == "CR90000001" and CLIENT_TOKEN.encode() not in (row.token_enc or b"")

    other = await api.new_account()
    with pytest.raises(grpc.aio.AioRpcError) as taken:  # one Deriv account, one user
        await api.auth.BindDerivAccount(
            auth_pb2.BindDerivAccountRequest(deriv_token=CLIENT_TOKEN), metadata=other.auth
        )
    assert taken.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_of(taken.value).error_info.reason == "DERIV_ACCOUNT_ALREADY_BOUND"


async def test_bind_deriv_account_with_the_gateway_down_is_unavailable(api: Harness) -> None:
    account = await api.new_account()
    with pytest.raises(grpc.aio.AioRpcError) as down:
        await api.auth.BindDerivAccount(
            auth_pb2.BindDerivAccountRequest(deriv_token=CLIENT_TOKEN), metadata=account.auth
        )
    assert down.value.code() == grpc.StatusCode.UNAVAILABLE
    assert details_of(down.value).error_info.reason == "UPSTREAM_UNAVAILABLE"
    assert "127.0.0.1" not in down.value.details()


async def test_dev_service_shows_a_user_only_their_own_messages(api: Harness) -> None:
    alice, bob = await api.new_account(), await api.new_account()
    for account in (alice, bob):
        await api.auth.RequestPhoneVerification(
            auth_pb2.RequestPhoneVerificationRequest(), metadata=account.auth
        )
        await api.auth.RequestEmailVerification(
            auth_pb2.RequestEmailVerificationRequest(), metadata=account.auth
        )

    mine = await api.dev.ListSentMessages(dev_pb2.ListSentMessagesRequest(), metadata=alice.auth)
    assert {(m.channel, m.to) for m in mine.messages} == {("sms", alice.phone), ("email", alice.email)}
    sms = await api.dev.ListSentMessages(dev_pb2.ListSentMessagesRequest(channel="sms"), metadata=alice.auth)
    assert [m.channel for m in sms.messages] == ["sms"]
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await api.dev.ListSentMessages(dev_pb2.ListSentMessagesRequest())
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_production_serves_no_dev_service(start_api: StartApi) -> None:
    api = await start_api(
        settings={"app_env": "production", "pii_keys": f"k1:{PiiCipher.generate_key()}"},
        notifier=SmtpNotifier(host="127.0.0.1", sender="a@b.c"),
        payments=None,
    )
    account = await api.new_account()
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await api.dev.ListSentMessages(dev_pb2.ListSentMessagesRequest(), metadata=account.auth)
    assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "penpay.dev.v1.DevService" not in {s.name for s in api.api.server.services}


async def test_access_tokens_expire_with_the_clock(api: Harness) -> None:
    account = await api.new_account()
    api.clock.advance(timedelta(minutes=9))
    await api.auth.ListDevices(auth_pb2.ListDevicesRequest(), metadata=account.auth)
    api.clock.advance(timedelta(minutes=2, seconds=31))  # past expiry + 30 s leeway
    with pytest.raises(grpc.aio.AioRpcError) as expired:
        await api.auth.ListDevices(auth_pb2.ListDevicesRequest(), metadata=account.auth)
    assert expired.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details_of(expired.value).error_info.reason == "INVALID_ACCESS_TOKEN"
