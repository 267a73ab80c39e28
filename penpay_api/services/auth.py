"""penpay.auth.v1.AuthService over application.identity.IdentityService."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import grpc

from application.identity.deriv_rest import DerivRestBinding
from application.identity.errors import DerivBindingRefused, UserNotFound
from application.identity.ports import IdentityUnitOfWork, VerificationPurpose
from application.identity.service import IdentityService, Session
from domain.shared.clock import Clock
from domain.user.user import User
from penpay.auth.v1 import auth_pb2 as pb
from penpay.auth.v1 import auth_pb2_grpc as pb_grpc
from penpay_api.auth import expires_in
from penpay_api.services._common import caller_device_id, caller_id, client_ip, timestamp

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AuthService"].full_name
PUBLIC_METHODS = frozenset(
    f"/{SERVICE_NAME}/{name}"
    for name in (
        "Register",
        "Login",
        "Refresh",
        "VerifyPhone",
        "VerifyEmail",
        "RequestPasswordReset",
        "ResetPassword",
        "CompleteDerivOAuth",  # Deriv's redirect: the sealed state names the user
    )
)
# Domain field names -> request field names, where they differ per method.
FIELD_ALIASES = {
    f"/{SERVICE_NAME}/Login": {"name": "device_name"},
    f"/{SERVICE_NAME}/ResetPassword": {"password": "new_password"},
    f"/{SERVICE_NAME}/ChangePassword": {"password": "new_password"},
}
TOKEN_TYPE = "Bearer"


class AuthServicer(pb_grpc.AuthServiceServicer):
    def __init__(
        self,
        identity: IdentityService,
        *,
        unit_of_work: Callable[[], IdentityUnitOfWork],
        clock: Clock,
        code_ttl: timedelta,
    ) -> None:
        self._identity = identity
        self._uow = unit_of_work
        self._clock = clock
        self._code_ttl = int(code_ttl.total_seconds())

    def _session_fields(self, session: Session) -> dict[str, object]:
        now = self._clock.now()
        return {
            "user_id": str(session.user_id),
            "device_id": session.device_id,
            "access_token": session.access_token,
            "expires_in": expires_in(session.access_expires_at, now),
            "refresh_token": session.refresh_token,
            "refresh_expires_in": expires_in(session.refresh_expires_at, now),
            "token_type": TOKEN_TYPE,
        }

    async def _user(self, find: Callable[[IdentityUnitOfWork], Awaitable[User | None]]) -> User | None:
        async with self._uow() as uow:
            return await find(uow)

    async def Register(
        self, request: pb.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterResponse:
        user_id = await self._identity.register(
            email=request.email, phone=request.phone_number, password=request.password, client_ip=client_ip()
        )
        return pb.RegisterResponse(user_id=str(user_id))

    async def RequestPhoneVerification(
        self, request: pb.RequestPhoneVerificationRequest, context: grpc.aio.ServicerContext
    ) -> pb.RequestPhoneVerificationResponse:
        await self._identity.request_verification(
            user_id=caller_id(), purpose=VerificationPurpose.PHONE, client_ip=client_ip()
        )
        return pb.RequestPhoneVerificationResponse(expires_in=self._code_ttl)

    async def RequestEmailVerification(
        self, request: pb.RequestEmailVerificationRequest, context: grpc.aio.ServicerContext
    ) -> pb.RequestEmailVerificationResponse:
        await self._identity.request_verification(
            user_id=caller_id(), purpose=VerificationPurpose.EMAIL, client_ip=client_ip()
        )
        return pb.RequestEmailVerificationResponse(expires_in=self._code_ttl)

    async def VerifyPhone(
        self, request: pb.VerifyPhoneRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyPhoneResponse:
        await self._identity.confirm_contact(
            purpose=VerificationPurpose.PHONE,
            contact=request.phone_number,
            code=request.code,
            client_ip=client_ip(),
        )
        return pb.VerifyPhoneResponse()

    async def VerifyEmail(
        self, request: pb.VerifyEmailRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyEmailResponse:
        await self._identity.confirm_contact(
            purpose=VerificationPurpose.EMAIL, contact=request.email, code=request.code, client_ip=client_ip()
        )
        return pb.VerifyEmailResponse()

    async def RequestPasswordReset(
        self, request: pb.RequestPasswordResetRequest, context: grpc.aio.ServicerContext
    ) -> pb.RequestPasswordResetResponse:
        await self._identity.request_password_reset(login=request.login, client_ip=client_ip())
        return pb.RequestPasswordResetResponse(expires_in=self._code_ttl)

    async def ResetPassword(
        self, request: pb.ResetPasswordRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResetPasswordResponse:
        revoked = await self._identity.reset_password(
            login=request.login, code=request.code, new_password=request.new_password, client_ip=client_ip()
        )
        return pb.ResetPasswordResponse(sessions_revoked=revoked)

    async def ChangePassword(
        self, request: pb.ChangePasswordRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChangePasswordResponse:
        revoked = await self._identity.change_password(
            user_id=caller_id(),
            current_password=request.current_password,
            new_password=request.new_password,
            client_ip=client_ip(),
        )
        return pb.ChangePasswordResponse(sessions_revoked=revoked)

    async def Login(self, request: pb.LoginRequest, context: grpc.aio.ServicerContext) -> pb.LoginResponse:
        session = await self._identity.login(
            login=request.login,
            password=request.password,
            device_id=request.device_id,
            device_name=request.device_name,
            client_ip=client_ip(),
        )
        return pb.LoginResponse(**self._session_fields(session))  # type: ignore[arg-type]

    async def Refresh(
        self, request: pb.RefreshRequest, context: grpc.aio.ServicerContext
    ) -> pb.RefreshResponse:
        session = await self._identity.refresh(refresh_token=request.refresh_token, client_ip=client_ip())
        return pb.RefreshResponse(**self._session_fields(session))  # type: ignore[arg-type]

    async def Logout(self, request: pb.LogoutRequest, context: grpc.aio.ServicerContext) -> pb.LogoutResponse:
        caller_id()
        await self._identity.logout(refresh_token=request.refresh_token)
        return pb.LogoutResponse()

    async def ListDevices(
        self, request: pb.ListDevicesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDevicesResponse:
        user_id = caller_id()
        user = await self._user(lambda uow: uow.users.get(user_id))
        if user is None:
            raise UserNotFound("no such user")
        current = caller_device_id()
        return pb.ListDevicesResponse(
            devices=[
                pb.Device(
                    device_id=d.device_id,
                    name=d.name,
                    added_at=timestamp(d.added_at),
                    last_seen_at=timestamp(d.last_seen_at),
                    current=d.device_id == current,
                )
                for d in user.devices
            ]
        )

    async def RemoveDevice(
        self, request: pb.RemoveDeviceRequest, context: grpc.aio.ServicerContext
    ) -> pb.RemoveDeviceResponse:
        await self._identity.remove_device(user_id=caller_id(), device_id=request.device_id)
        return pb.RemoveDeviceResponse()

    async def BindDerivAccount(
        self, request: pb.BindDerivAccountRequest, context: grpc.aio.ServicerContext
    ) -> pb.BindDerivAccountResponse:
        user_id = caller_id()
        login_id = await self._identity.bind_deriv_account(user_id=user_id, deriv_token=request.deriv_token)
        user = await self._user(lambda uow: uow.users.get(user_id))
        acceptable = bool(user and user.kyc and user.kyc.is_acceptable())
        return pb.BindDerivAccountResponse(deriv_login_id=login_id.value, kyc_acceptable=acceptable)

    def _rest(self) -> DerivRestBinding:
        if self._identity.rest is None:
            raise DerivBindingRefused("this PenPay is not set up for Deriv's new API (PENPAY_DERIV_REST_*)")
        return self._identity.rest

    async def StartDerivOAuth(
        self, request: pb.StartDerivOAuthRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartDerivOAuthResponse:
        started = await self._rest().start(user_id=caller_id())
        return pb.StartDerivOAuthResponse(
            authorize_url=started.authorize_url, browser_nonce=started.browser_nonce
        )

    async def CompleteDerivOAuth(
        self, request: pb.CompleteDerivOAuthRequest, context: grpc.aio.ServicerContext
    ) -> pb.CompleteDerivOAuthResponse:
        if request.error:
            # the user declined on Deriv's page (or Deriv refused): nothing to exchange
            raise DerivBindingRefused(f"Deriv did not grant access ({request.error[:64]}): bind again")
        user_id, login_id = await self._rest().complete(
            state=request.state, code=request.code, browser_nonce=request.browser_nonce
        )
        user = await self._user(lambda uow: uow.users.get(user_id))
        acceptable = bool(user and user.kyc and user.kyc.is_acceptable())
        return pb.CompleteDerivOAuthResponse(deriv_login_id=login_id.value, kyc_acceptable=acceptable)
