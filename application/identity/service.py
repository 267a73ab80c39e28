"""Identity use cases: register, log in (binding a device), refresh, log out, remove a device,
verify phone and email by one-time codes, reset (by a code) and change the password, bind the
user's Deriv account and refresh the KYC snapshot.

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

from application.identity.deriv_rest import DerivRestBinding
from application.identity.errors import (
    AlreadyRegistered,
    CurrentPasswordWrong,
    DerivAccountNotBound,
    DerivBindingRefused,
    DerivRebindRequired,
    InvalidCredentials,
    InvalidRefreshToken,
    RateLimited,
    UserNotFound,
    VerificationCodeInvalid,
)
from application.identity.password_policy import check_password
from application.identity.ports import (
    AccessClaims,
    AccessTokenIssuer,
    DerivAccountGateway,
    IdentityUnitOfWork,
    KnownUser,
    Notifier,
    PasswordHasher,
    RefreshTokenStore,
    VerificationCodeStore,
    VerificationPurpose,
)
from application.identity.rate_limits import RateLimitGuard
from domain.shared.clock import Clock
from domain.shared.ids import UserId
from domain.shared.json_value import JSONValue
from domain.user.deriv_login_id import DerivLoginId
from domain.user.device import Device
from domain.user.email import Email
from domain.user.kyc_snapshot import KycSnapshot
from domain.user.password_hash import PasswordHash
from domain.user.phone_number import PhoneNumber
from domain.user.user import User
from domain.wallet.money import Currency

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
        rest: DerivRestBinding | None = None,
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
        self.rest = rest  # new-API (REST) binding; None: this deployment binds v3 accounts only

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
            # Its wallets now, with the user: a first deposit then creates none (each was a
            # transaction of its own on the money path, four statements per wallet).
            await uow.ledger.open_wallets(user.id, Currency)
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

    # --- password reset and change ---------------------------------------------------------

    async def _verified_contact(self, login: str) -> tuple[User, VerificationPurpose] | None:
        """The account whose *verified* email or phone `login` is, and which of the two it is."""
        async with self._uow() as uow:
            user = await self._find_for_login(uow, login)
        if user is None:
            return None
        if "@" in login:
            return (user, VerificationPurpose.EMAIL) if user.email_verified else None
        return (user, VerificationPurpose.PHONE) if user.phone_verified else None

    async def request_password_reset(self, *, login: str, client_ip: str | None = None) -> None:
        """Send a reset code to `login` if it is an account's verified email or phone. Says nothing
        either way (the caller answers the same), so no account can be discovered through it."""
        login = login.strip()
        await self._limits.check("password_reset_request", ip=client_ip, account=login.lower())
        found = await self._verified_contact(login)
        if found is None:
            log.info("password_reset.not_sent", reason="no_verified_contact")
            return
        user, via = found
        code = self._new_code()
        await self._codes.create(
            user_id=user.id, purpose=VerificationPurpose.PASSWORD_RESET, code=code, now=self._clock.now()
        )
        text = f"Your PenPay password reset code is {code}. If you did not ask for it, ignore this message."
        try:
            if via is VerificationPurpose.PHONE:
                await self._notifier.send_sms(to=user.phone.e164, body=text)
            else:
                await self._notifier.send_email(
                    to=user.email.value, subject="Your PenPay password reset code", body=text
                )
        except RateLimited:  # the recipient's own limit: answering differently would tell it exists
            log.warning("password_reset.not_sent", user_id=str(user.id), reason="recipient_rate_limit")
            return
        async with self._uow() as uow:
            uow.audit(
                action="PasswordResetRequested",
                subject_type="User",
                subject_id=str(user.id),
                details={"via": "sms" if via is VerificationPurpose.PHONE else "email"},
            )
            await uow.commit()
        log.info("password_reset.sent", user_id=str(user.id), via=via.value)

    async def reset_password(
        self, *, login: str, code: str, new_password: str, client_ip: str | None = None
    ) -> int:
        """Set a new password with a reset code; every session ends. Returns how many did."""
        login = login.strip()
        await self._limits.check("password_reset", ip=client_ip, account=login.lower())
        # The policy is judged before the account is looked up (with the login only), so a weak
        # password gets the same answer whether or not the account exists.
        is_email = "@" in login
        password = check_password(
            new_password, email=login if is_email else "", phone="" if is_email else login
        )
        found = await self._verified_contact(login)
        if found is None:
            raise VerificationCodeInvalid("no valid code: request a new one")
        user, via = found
        await self._codes.consume(
            user_id=user.id,
            purpose=VerificationPurpose.PASSWORD_RESET,
            code=code.strip(),
            now=self._clock.now(),
        )
        revoked = await self._set_password(
            user.id,
            password,
            action="PasswordReset",
            details={"via": "sms" if via is VerificationPurpose.PHONE else "email"},
        )
        log.info("password.reset", user_id=str(user.id), sessions_revoked=revoked)
        return revoked

    async def change_password(
        self, *, user_id: UserId, current_password: str, new_password: str, client_ip: str | None = None
    ) -> int:
        """The signed-in user's new password, given the current one; every session ends (theirs too)."""
        await self._limits.check("password_change", ip=client_ip, account=str(user_id))
        async with self._uow() as uow:
            user = await self._require_user(uow, user_id)
        if not await self._hasher.verify(user.password_hash.value, current_password):
            log.info("password.change_refused", user_id=str(user_id), reason="bad_current_password")
            raise CurrentPasswordWrong("the current password is wrong")
        password = check_password(new_password, email=user.email.value, phone=user.phone.value)
        revoked = await self._set_password(user_id, password, action="PasswordChanged", details={})
        log.info("password.changed", user_id=str(user_id), sessions_revoked=revoked)
        return revoked

    async def _set_password(
        self, user_id: UserId, password: str, *, action: str, details: dict[str, JSONValue]
    ) -> int:
        """Hash, end every session, store the hash (devices signed out) with its audit record, end
        sessions again.

        Sessions end first: a crash before the new hash is stored leaves the account signed out with
        its old password (safe; the user tries again), never the new password with old sessions
        alive. The second pass ends a session refreshed in between."""
        password_hash = PasswordHash(await self._hasher.hash(password))
        now = self._clock.now()
        revoked = await self._refresh.revoke_user(user_id, now=now)
        async with self._uow() as uow:
            user = await self._require_user(uow, user_id)
            user.change_password_hash(password_hash, now=now)
            # Every device signs in again (a reset after a lost phone must not leave the
            # two-device limit held by devices that no longer have a session).
            signed_out = [d.device_id for d in user.devices]
            for device_id in signed_out:
                user.remove_device(device_id, now=now)
            await uow.users.save(user)
            uow.audit(
                action=action,
                subject_type="User",
                subject_id=str(user_id),
                details={**details, "sessions_revoked": revoked, "devices_signed_out": len(signed_out)},
            )
            await uow.commit()
        return revoked + await self._refresh.revoke_user(user_id, now=self._clock.now())

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

    async def refresh_kyc(self, user_id: UserId, *, known: KnownUser | None = None) -> KycSnapshot:
        """A fresh KycSnapshot from Deriv's get_settings (on demand and before money moves).

        A new-API (REST) account: that API shares no profile, so the snapshot is the one kept from
        the user's v3 account, after checking the token still opens the bound account.
        `known`: the user and token the caller read in this request (no second read of either)."""
        if known is not None and known.user.id == user_id:
            user, token = known.user, known.deriv_token
        else:
            async with self._uow() as uow:
                user = await self._require_user(uow, user_id)
                token = await uow.users.load_deriv_token(user_id)
        stored = user.kyc
        if token is None:
            raise DerivAccountNotBound("bind a Deriv account first")
        if user.deriv_login_id is not None and user.deriv_login_id.is_rest:
            if self.rest is None:
                raise DerivRebindRequired("this PenPay does not reach Deriv's new API yet")
            await self.rest.check_account(user_id, user.deriv_login_id)
            if stored is None:
                raise DerivAccountNotBound("no KYC snapshot is kept for this account")
            return stored
        try:
            settings = await self._deriv.get_settings(token)
        except DerivBindingRefused:
            # The token that worked at binding no longer does: revoked, or Deriv moved the user to
            # its new API (where v3 tokens stop working). Only binding again helps.
            raise DerivRebindRequired(
                "Deriv no longer accepts your token (your account may have moved to Deriv's new API): "
                "bind your Deriv account again"
            ) from None
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
