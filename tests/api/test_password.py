"""Password reset (a code to the verified phone or email) and change, through real gRPC stubs:
every session ends, refusals change nothing, rate limits hold, each step is audited."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy import func, select

from penpay.auth.v1 import auth_pb2
from persistence.tables import audit_logs, audit_pending

from .conftest import PASSWORD, Account, Harness, bearer, details_of

pytestmark = pytest.mark.integration

NEW_PASSWORD = "a brand new one 42"


async def audited(api: Harness, user_id: str, action: str) -> int:
    async with api.core.engine.connect() as connection:
        total = 0
        for table in (audit_logs, audit_pending):
            statement = select(func.count()).where(table.c.subject_id == user_id, table.c.action == action)
            total += int((await connection.execute(statement)).scalar_one())
        return total


def reset_code(api: Harness, channel: str, to: str) -> str:
    body = api.notifier.latest(channel, to).body
    assert "password reset code is" in body
    return body.split("code is ")[1][:6]


async def refused(call: object, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call  # type: ignore[misc]
    assert failed.value.code() == code, failed.value.details()
    return failed.value


async def login_with(api: Harness, login: str, password: str) -> auth_pb2.LoginResponse:
    response: auth_pb2.LoginResponse = await api.auth.Login(
        auth_pb2.LoginRequest(login=login, password=password, device_id="device-after-reset", device_name="x")
    )
    return response


async def test_a_reset_by_sms_sets_the_password_and_ends_every_session(api: Harness) -> None:
    account = await api.verified_account()
    other = await api.login(account.email)  # a second device: two sessions
    sent = await api.auth.RequestPasswordReset(auth_pb2.RequestPasswordResetRequest(login=account.phone))
    assert sent.expires_in == 600
    code = reset_code(api, "sms", account.phone)

    done = await api.auth.ResetPassword(
        auth_pb2.ResetPasswordRequest(login=account.phone, code=code, new_password=NEW_PASSWORD)
    )

    assert done.sessions_revoked == 2
    await refused(
        api.auth.ListDevices(auth_pb2.ListDevicesRequest(), metadata=account.auth),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    for token in (account.refresh_token, other.refresh_token):
        await refused(
            api.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=token)), grpc.StatusCode.UNAUTHENTICATED
        )
    await refused(login_with(api, account.email, PASSWORD), grpc.StatusCode.UNAUTHENTICATED)
    again = await login_with(api, account.phone, NEW_PASSWORD)
    devices = await api.auth.ListDevices(auth_pb2.ListDevicesRequest(), metadata=bearer(again.access_token))
    assert [d.device_id for d in devices.devices] == ["device-after-reset"]  # every device signed out
    await refused(  # the code worked once
        api.auth.ResetPassword(
            auth_pb2.ResetPasswordRequest(login=account.phone, code=code, new_password="yet another 777")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert await audited(api, account.user_id, "PasswordResetRequested") == 1
    assert await audited(api, account.user_id, "PasswordReset") == 1


async def test_a_reset_code_goes_only_to_a_verified_contact_and_unknown_accounts_look_the_same(
    api: Harness,
) -> None:
    account = await api.verified_account()  # phone verified, email not
    unknown = "nobody-here@example.co.ke"
    for login in (account.email, unknown):
        sent = await api.auth.RequestPasswordReset(auth_pb2.RequestPasswordResetRequest(login=login))
        assert sent.expires_in == 600  # the same answer
    assert [m for m in api.notifier.sent if "reset" in m.body] == []
    assert await audited(api, account.user_id, "PasswordResetRequested") == 0

    for login in (account.email, unknown):  # a guessed code, or a weak password: the same answers
        bad = await refused(
            api.auth.ResetPassword(
                auth_pb2.ResetPasswordRequest(login=login, code="123456", new_password=NEW_PASSWORD)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert details_of(bad).error_info.reason == "VERIFICATION_CODE_INVALID"
        weak = await refused(
            api.auth.ResetPassword(
                auth_pb2.ResetPasswordRequest(login=login, code="123456", new_password="short")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        parsed = details_of(weak)
        assert parsed.error_info.reason == "WEAK_PASSWORD"
        assert [v.field for v in parsed.violations] == ["new_password"]
    assert (await login_with(api, account.email, PASSWORD)).access_token  # nothing changed


async def test_a_wrong_reset_code_changes_nothing_and_requests_are_rate_limited(api: Harness) -> None:
    account = await api.verified_account()
    await api.auth.RequestPasswordReset(auth_pb2.RequestPasswordResetRequest(login=account.phone))
    code = reset_code(api, "sms", account.phone)
    wrong = "000000" if code != "000000" else "111111"

    bad = await refused(
        api.auth.ResetPassword(
            auth_pb2.ResetPasswordRequest(login=account.phone, code=wrong, new_password=NEW_PASSWORD)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert details_of(bad).error_info.reason == "VERIFICATION_CODE_INVALID"
    await api.auth.ListDevices(auth_pb2.ListDevicesRequest(), metadata=account.auth)  # still signed in
    assert await audited(api, account.user_id, "PasswordReset") == 0

    for _ in range(2):  # 3 per address per hour
        await api.auth.RequestPasswordReset(auth_pb2.RequestPasswordResetRequest(login=account.phone))
    limited = await refused(
        api.auth.RequestPasswordReset(auth_pb2.RequestPasswordResetRequest(login=account.phone)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert details_of(limited).retry_delay_seconds


async def test_change_password_needs_the_current_one_and_ends_every_session(api: Harness) -> None:
    account: Account = await api.new_account()

    wrong = await refused(
        api.auth.ChangePassword(
            auth_pb2.ChangePasswordRequest(current_password="not it at all 1", new_password=NEW_PASSWORD),
            metadata=account.auth,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    parsed = details_of(wrong)
    assert parsed.error_info.reason == "CURRENT_PASSWORD_WRONG"
    assert [v.field for v in parsed.violations] == ["current_password"]
    weak = await refused(
        api.auth.ChangePassword(
            auth_pb2.ChangePasswordRequest(current_password=PASSWORD, new_password="aaaaaaaaaaaa"),
            metadata=account.auth,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert [v.field for v in details_of(weak).violations] == ["new_password"]
    await api.auth.ListDevices(auth_pb2.ListDevicesRequest(), metadata=account.auth)  # nothing changed
    assert await audited(api, account.user_id, "PasswordChanged") == 0

    changed = await api.auth.ChangePassword(
        auth_pb2.ChangePasswordRequest(current_password=PASSWORD, new_password=NEW_PASSWORD),
        metadata=account.auth,
    )

    assert changed.sessions_revoked == 1
    await refused(
        api.auth.ListDevices(auth_pb2.ListDevicesRequest(), metadata=account.auth),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await refused(login_with(api, account.email, PASSWORD), grpc.StatusCode.UNAUTHENTICATED)
    assert (await login_with(api, account.email, NEW_PASSWORD)).access_token
    assert await audited(api, account.user_id, "PasswordChanged") == 1


async def test_change_password_without_a_token_is_unauthenticated(api: Harness) -> None:
    await refused(
        api.auth.ChangePassword(
            auth_pb2.ChangePasswordRequest(current_password=PASSWORD, new_password=NEW_PASSWORD)
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )
