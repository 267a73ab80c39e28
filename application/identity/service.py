"""Identity use cases: register, log in (binding a device), refresh, log out, remove a device,
verify phone and email by one-time codes, bind the user's Deriv account and refresh the KYC snapshot.

Slow or remote work (Argon2, Deriv calls, sending messages) happens outside database
transactions, so no connection is held while waiting on them.
Secrets (passwords, tokens, codes) are never logged; logs carry ids.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from application.identity.errors import (
    AlreadyRegistered,
    DerivAccountNotBound,
    DerivBindingRefused,
    InvalidCredentials,
    InvalidRefreshToken,
    UserNotFound,
    VerificationCodeInvalid,
)
from application.identity.password_policy import check_password
from application.identity.ports import (
    AccessClaims,
    AccessTokenIssuer,
    DerivAccountGateway,
    IdentityUnitOfWork,
    Notifier,
    PasswordHasher,
    RefreshTokenStore,
    VerificationCodeStore,
    VerificationPurpose,
)
from application.identity.rate_limits import RateLimitGuard
from domain.shared.clock import Clock
from domain.shared.ids import UserId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.device import Device
from domain.user.email import Email
from domain.user.kyc_snapshot import KycSnapshot
from domain.user.password_hash import PasswordHash
from domain.user.phone_number import PhoneNumber
from domain.user.user import User

log = structlog.get_logger("penpay.identity")

DERIV_CURRENCY = "USD"
# read: get_settings for the KYC snapshot; payments: the user's side of paymentagent_withdraw.
REQUIRED_DERIV_SCOPES = frozenset({"read", "payments"})
CODE_DIGITS = 6
# An unchanged KYC snapshot is stored again (re-stamped) at most this often.
KYC_RESTAMP_AFTER = timedelta(hours=24)


@dataclass(frozen=True, slots=True, repr=False)
class Session:
    user_id: UserId
    device_id: str
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime

    def __repr__(self) -> str:
        return f"Session(user_id={self.user_id}, device_id={self.device_id!r}, tokens='***')"


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


class IdentityService:
    def __init__(
        self,
        *,
        unit_of_work: Callable[[], IdentityUnitOfWork],
        hasher: PasswordHasher,
        access_tokens: AccessTokenIssuer,
        refresh_tokens: RefreshTokenStore,
        codes: VerificationCodeStore,
        notifier: Notifier,
        deriv: DerivAccountGateway,
        rate_limits: RateLimitGuard,
        clock: Clock,
        code_generator: Callable[[], str] = new_code,
    ) -> None:
        self._uow = unit_of_work
        self._hasher = hasher
        self._access = access_tokens
        self._refresh = refresh_tokens
        self._codes = codes
        self._notifier = notifier
        self._deriv = deriv
        self._limits = rate_limits
        self._clock = clock
        self._new_code = code_generator

    # --- registration and sessions ----------------------------------------------------------

    async def register(
        self, *, email: str, phone: str, password: str, client_ip: str | None = None
    ) -> UserId:
        email_vo, phone_vo = Email(email), PhoneNumber(phone)
        await self._limits.check("register", ip=client_ip, phone=phone_vo.value)
        password = check_password(password, email=email_vo.value, phone=phone_vo.value)
        async with self._uow() as uow:
            if await uow.users.find_by_email(email_vo) or await uow.users.find_by_phone(phone_vo):
                raise AlreadyRegistered("an account with this email or phone already exists")
        password_hash = PasswordHash(await self._hasher.hash(password))
        async with self._uow() as uow:
            user = User.register(
                email=email_vo, phone=phone_vo, password_hash=password_hash, now=self._clock.now()
            )
            await uow.users.add(user)  # AlreadyRegistered on a race (unique email/phone)
            uow.audit(action="UserRegistered", subject_type="User", subject_id=str(user.id))
            await uow.commit()
        log.info("user.registered", user_id=str(user.id))
        return user.id

    async def _find_for_login(self, uow: IdentityUnitOfWork, login: str) -> User | None:
        try:
            if "@" in login:
                return await uow.users.find_by_email(Email(login))
            return await uow.users.find_by_phone(PhoneNumber(login))
        except ValueError:
            return None

    async def login(
        self,
        *,
        login: str,
        password: str,
        device_id: str,
        device_name: str,
        client_ip: str | None = None,
    ) -> Session:
        """Email or phone + password; binds the device (at most two; a third is refused)."""
        await self._limits.check("login", ip=client_ip, account=login.strip().lower())
        async with self._uow() as uow:
            user = await self._find_for_login(uow, login)
        if user is None:
            await self._hasher.burn(password)
            log.info("login.refused", reason="unknown_account")
            raise InvalidCredentials("wrong email/phone or password")
        if not await self._hasher.verify(user.password_hash.value, password):
            log.info("login.refused", reason="bad_password", user_id=str(user.id))
            raise InvalidCredentials("wrong email/phone or password")
        new_hash = None
        if self._hasher.needs_rehash(user.password_hash.value):
            new_hash = PasswordHash(await self._hasher.hash(password))
        now = self._clock.now()
        device = Device.register(device_id, device_name, now=now)
        async with self._uow() as uow:
            user = await uow.users.get(user.id)
            if user is None:
                raise InvalidCredentials("wrong email/phone or password")
            user.add_device(device, now=now)  # DeviceLimitReached names the way out
            if new_hash is not None:
                user.change_password_hash(new_hash, now=now)
            await uow.users.save(user)
            uow.audit(
                action="UserLoggedIn",
                subject_type="User",
                subject_id=str(user.id),
                details={"device_id": device.device_id, "rehashed": new_hash is not None},
            )
            await uow.commit()
        issued = await self._refresh.issue(user_id=user.id, device_id=device.device_id, now=now)
        log.info(
            "login.accepted", user_id=str(user.id), device_id=device.device_id, rehashed=new_hash is not None
        )
        return self._session(
            user.id, device.device_id, issued.family_id, issued.token, issued.expires_at, now
        )

    def _session(
        self,
        user_id: UserId,
        device_id: str,
        family_id: str,
        refresh: str,
        refresh_expires: datetime,
        now: datetime,
    ) -> Session:
        access, access_expires = self._access.issue(
            user_id=str(user_id), device_id=device_id, session_id=family_id, now=now
        )
        return Session(user_id, device_id, access, access_expires, refresh, refresh_expires)

    async def refresh(self, *, refresh_token: str, client_ip: str | None = None) -> Session:
        await self._limits.check("refresh", ip=client_ip)
        now = self._clock.now()
        rotated = await self._refresh.rotate(refresh_token, now=now)
        async with self._uow() as uow:
            user = await uow.users.get(rotated.user_id)
        if user is None or user.find_device(rotated.device_id) is None:
            await self._refresh.revoke_family_of(rotated.issued.token, now=now)
            raise InvalidRefreshToken("this device is no longer signed in")
        log.info("session.refreshed", user_id=str(user.id), device_id=rotated.device_id)
        return self._session(
            user.id,
            rotated.device_id,
            rotated.issued.family_id,
            rotated.issued.token,
            rotated.issued.expires_at,
            now,
        )

    async def logout(self, *, refresh_token: str) -> None:
        await self._refresh.revoke_family_of(refresh_token, now=self._clock.now())
        log.info("session.logged_out")

    def authenticate(self, access_token: str) -> AccessClaims:
        return self._access.verify(access_token, now=self._clock.now())

    async def remove_device(self, *, user_id: UserId, device_id: str) -> None:
        now = self._clock.now()
        async with self._uow() as uow:
            user = await self._require_user(uow, user_id)
            user.remove_device(device_id, now=now)
            await uow.users.save(user)
            uow.audit(
                action="DeviceRemoved",
                subject_type="User",
                subject_id=str(user_id),
                details={"device_id": device_id},
            )
            await uow.commit()
        await self._refresh.revoke_device(user_id, device_id, now=now)
        log.info("device.removed", user_id=str(user_id), device_id=device_id)

    @staticmethod
    async def _require_user(uow: IdentityUnitOfWork, user_id: UserId) -> User:
        user = await uow.users.get(user_id)
        if user is None:
            raise UserNotFound("no such user")
        return user

    # --- verification by one-time codes -----------------------------------------------------

    async def request_verification(
        self, *, user_id: UserId, purpose: VerificationPurpose, client_ip: str | None = None
    ) -> None:
        async with self._uow() as uow:
            user = await self._require_user(uow, user_id)
        await self._limits.check("verification_request", ip=client_ip, phone=user.phone.value)
        code = self._new_code()
        await self._codes.create(user_id=user_id, purpose=purpose, code=code, now=self._clock.now())
        if purpose is VerificationPurpose.PHONE:
            await self._notifier.send_sms(to=user.phone.e164, body=f"Your PenPay verification code is {code}")
        else:
            await self._notifier.send_email(
                to=user.email.value,
                subject="Your PenPay verification code",
                body=f"Your PenPay verification code is {code}. It expires in 10 minutes.",
            )
        log.info("verification.sent", user_id=str(user_id), purpose=purpose.value)

    async def confirm_verification(
        self, *, user_id: UserId, purpose: VerificationPurpose, code: str, client_ip: str | None = None
    ) -> None:
        async with self._uow() as uow:
            user = await self._require_user(uow, user_id)
        await self._limits.check("verification_confirm", ip=client_ip, phone=user.phone.value)
        await self._consume_code(user_id, purpose, code)

    async def confirm_contact(
        self, *, purpose: VerificationPurpose, contact: str, code: str, client_ip: str | None = None
    ) -> None:
        """Confirm the phone or email address `contact` names (the public VerifyPhone/VerifyEmail).

        The attempt is counted before anything else is decided: an unknown contact costs an attempt
        like a wrong code and gets the same answer, so neither guessing codes nor probing which
        contacts have accounts is free."""
        if purpose is VerificationPurpose.PHONE:
            phone = PhoneNumber(contact)
            async with self._uow() as uow:
                user = await uow.users.find_by_phone(phone)
            limited_phone: str | None = phone.value
        else:
            email = Email(contact)
            async with self._uow() as uow:
                user = await uow.users.find_by_email(email)
            limited_phone = user.phone.value if user is not None else None
        await self._limits.check("verification_confirm", ip=client_ip, phone=limited_phone)
        if user is None:
            raise VerificationCodeInvalid("no valid code: request a new one")
        try:
            await self._consume_code(user.id, purpose, code)
        except UserNotFound:
            raise VerificationCodeInvalid("no valid code: request a new one") from None

    async def _consume_code(self, user_id: UserId, purpose: VerificationPurpose, code: str) -> None:
        now = self._clock.now()
        await self._codes.consume(user_id=user_id, purpose=purpose, code=code.strip(), now=now)
        async with self._uow() as uow:
            user = await self._require_user(uow, user_id)
            if purpose is VerificationPurpose.PHONE:
                user.verify_phone(now=now)
            else:
                user.verify_email(now=now)
            await uow.users.save(user)
            await uow.commit()
        log.info("verification.confirmed", user_id=str(user_id), purpose=purpose.value)

    # --- Deriv binding and KYC --------------------------------------------------------------

    async def bind_deriv_account(self, *, user_id: UserId, deriv_token: str) -> DerivLoginId:
        """The user's Deriv OAuth token -> their one real-money USD account, plus a KYC snapshot."""
        authorization = await self._deriv.authorize(deriv_token)
        login_id = DerivLoginId(authorization.loginid)
        login_id.require_real_money()  # VirtualAccountRefused for VRTC/VRW ids
        if authorization.is_virtual:
            raise DerivBindingRefused("this is a demo (virtual) Deriv account; bind a real-money USD account")
        if authorization.currency != DERIV_CURRENCY:
            raise DerivBindingRefused(
                f"Deriv account {login_id} is in {authorization.currency or 'no currency'}; "
                "bind a USD account"
            )
        missing = REQUIRED_DERIV_SCOPES - set(authorization.scopes)
        if missing:
            raise DerivBindingRefused(
                f"the Deriv token lacks the scopes {', '.join(sorted(missing))}; "
                "create a token with read and payments"
            )
        settings = await self._deriv.get_settings(deriv_token)
        now = self._clock.now()
        snapshot = KycSnapshot.from_get_settings(settings, now)
        async with self._uow() as uow:
            user = await self._require_user(uow, user_id)
            user.bind_deriv_account(login_id, now=now)  # DerivAccountAlreadyBound if another one
            user.take_kyc_snapshot(snapshot, now=now)
            await uow.users.save(user)  # DerivAccountAlreadyBound if bound to another user
            await uow.users.store_deriv_credentials(user_id, token=deriv_token, scopes=authorization.scopes)
            uow.audit(
                action="DerivAccountBound",
                subject_type="User",
                subject_id=str(user_id),
                details={"deriv_login_id": login_id.value, "kyc_acceptable": snapshot.is_acceptable()},
            )
            await uow.commit()
        log.info("deriv.bound", user_id=str(user_id), deriv_login_id=login_id.value)
        return login_id

    async def refresh_kyc(self, user_id: UserId) -> KycSnapshot:
        """A fresh KycSnapshot from Deriv's get_settings (on demand and before money moves)."""
        async with self._uow() as uow:
            stored = (await self._require_user(uow, user_id)).kyc
            token = await uow.users.load_deriv_token(user_id)
        if token is None:
            raise DerivAccountNotBound("bind a Deriv account first")
        settings = await self._deriv.get_settings(token)
        now = self._clock.now()
        snapshot = KycSnapshot.from_get_settings(settings, now)
        if stored is not None and stored.same_profile(snapshot) and now - stored.taken_at < KYC_RESTAMP_AFTER:
            # Checked against Deriv just now and unchanged: writing it back (the user row, an
            # event, an audit record) at every payment was the API's largest cost per deposit.
            log.info("kyc.unchanged", user_id=str(user_id), acceptable=snapshot.is_acceptable())
            return snapshot
        async with self._uow() as uow:
            user = await self._require_user(uow, user_id)
            user.take_kyc_snapshot(snapshot, now=now)
            await uow.users.save(user)
            await uow.commit()
        log.info("kyc.refreshed", user_id=str(user_id), acceptable=snapshot.is_acceptable())
        return snapshot
