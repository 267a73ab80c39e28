"""Phone/email verification by one-time codes; Deriv binding and KYC against the Deriv simulator."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from application.identity.errors import (
    DerivAccountNotBound,
    DerivBindingRefused,
    DerivRebindRequired,
    VerificationAttemptsExhausted,
    VerificationCodeInvalid,
)
from application.identity.ports import VerificationPurpose
from deriv_gateway.simulator import DerivSimulator
from domain.shared.ids import UserId
from domain.user.errors import DerivAccountAlreadyBound, VirtualAccountRefused
from domain.user.kyc_snapshot import KycSnapshot
from persistence.tables import deriv_accounts, verification_codes

from .conftest import PASSWORD, Identity, unique_email, unique_phone

pytestmark = pytest.mark.integration


async def new_user(identity: Identity) -> tuple[UserId, str, str]:
    email, phone = unique_email(), unique_phone()
    user_id = await identity.service.register(email=email, phone=phone, password=PASSWORD)
    return user_id, email, phone


def latest_code(identity: Identity, channel: str, to: str) -> str:
    return identity.notifier.latest(channel, to).body.split("code is ")[1][:6]


async def test_phone_and_email_are_verified_by_codes_sent_through_the_notifier(
    any_identity: Identity,
) -> None:
    user_id, email, phone = await new_user(any_identity)
    await any_identity.service.request_verification(user_id=user_id, purpose=VerificationPurpose.PHONE)
    await any_identity.service.request_verification(user_id=user_id, purpose=VerificationPurpose.EMAIL)
    sms_code = latest_code(any_identity, "sms", phone)
    email_code = latest_code(any_identity, "email", email)

    async with any_identity.engine.connect() as connection:
        stored = (await connection.execute(select(verification_codes.c.code_hash))).scalars().all()
    assert sms_code not in stored and all(len(h) == 64 for h in stored)  # keyed hash only

    await any_identity.service.confirm_verification(
        user_id=user_id, purpose=VerificationPurpose.PHONE, code=sms_code
    )
    await any_identity.service.confirm_verification(
        user_id=user_id, purpose=VerificationPurpose.EMAIL, code=email_code
    )
    async with any_identity.uow() as uow:
        user = await uow.users.get(user_id)
    assert user is not None and user.phone_verified and user.email_verified
    # a code works once
    with pytest.raises(VerificationCodeInvalid):
        await any_identity.service.confirm_verification(
            user_id=user_id, purpose=VerificationPurpose.PHONE, code=sms_code
        )


async def test_brute_force_hits_the_attempt_limit(identity: Identity) -> None:
    user_id, _, phone = await new_user(identity)
    await identity.service.request_verification(user_id=user_id, purpose=VerificationPurpose.PHONE)
    right = latest_code(identity, "sms", phone)
    wrong = [f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" != right][:5]
    for attempt, code in enumerate(wrong[:4]):
        with pytest.raises(VerificationCodeInvalid) as refused:
            await identity.service.confirm_verification(
                user_id=user_id, purpose=VerificationPurpose.PHONE, code=code
            )
        assert refused.value.attempts_left == 4 - attempt
    with pytest.raises(VerificationAttemptsExhausted):
        await identity.service.confirm_verification(
            user_id=user_id, purpose=VerificationPurpose.PHONE, code=wrong[4]
        )
    # the right code no longer helps: the code is dead, a new one must be requested
    with pytest.raises(VerificationAttemptsExhausted):
        await identity.service.confirm_verification(
            user_id=user_id, purpose=VerificationPurpose.PHONE, code=right
        )


async def test_codes_expire_and_a_new_code_supersedes_the_old(identity: Identity) -> None:
    user_id, _, phone = await new_user(identity)
    await identity.service.request_verification(user_id=user_id, purpose=VerificationPurpose.PHONE)
    first = latest_code(identity, "sms", phone)
    identity.clock.advance(timedelta(minutes=11))
    with pytest.raises(VerificationCodeInvalid):
        await identity.service.confirm_verification(
            user_id=user_id, purpose=VerificationPurpose.PHONE, code=first
        )
    await identity.service.request_verification(user_id=user_id, purpose=VerificationPurpose.PHONE)
    await identity.service.request_verification(user_id=user_id, purpose=VerificationPurpose.PHONE)
    messages = [m for m in identity.notifier.sent if m.to == phone]
    older, newest = messages[-2].body[-6:], messages[-1].body[-6:]
    if older != newest:
        with pytest.raises(VerificationCodeInvalid):
            await identity.service.confirm_verification(
                user_id=user_id, purpose=VerificationPurpose.PHONE, code=older
            )
    await identity.service.confirm_verification(
        user_id=user_id, purpose=VerificationPurpose.PHONE, code=newest
    )


async def stored_kyc(identity: Identity, user_id: UserId) -> KycSnapshot:
    async with identity.uow() as uow:
        user = await uow.users.get(user_id)
    assert user is not None and user.kyc is not None
    return user.kyc


async def test_binding_a_real_usd_deriv_account_takes_a_kyc_snapshot_and_keeps_the_token_encrypted(
    any_identity: Identity, deriv_sim: DerivSimulator
) -> None:
    user_id, _, _ = await new_user(any_identity)
    with pytest.raises(DerivAccountNotBound):
        await any_identity.service.refresh_kyc(user_id)
    login_id = await any_identity.service.bind_deriv_account(user_id=user_id, deriv_token="sim-client1-token")
    assert login_id.value == "CR90000001"
    async with any_identity.uow() as uow:
        user = await uow.users.get(user_id)
        assert await uow.users.load_deriv_token(user_id) == "sim-client1-token"
    assert user is not None and user.deriv_login_id == login_id
    assert user.kyc is not None and user.kyc.is_acceptable() and user.kyc.residence == "ke"
    async with any_identity.engine.connect() as connection:
        row = (
            await connection.execute(select(deriv_accounts).where(deriv_accounts.c.user_id == user_id.value))
        ).one()
    assert (
        row.currency == "USD"
        and row.token_key_id == "dev"
        and b"sim-client1-token" not in bytes(row.token_enc)
    )
    assert set(row.scopes.split()) >= {"read", "payments"}

    first_taken = user.kyc.taken_at
    any_identity.clock.advance(timedelta(minutes=5))
    refreshed = await any_identity.service.refresh_kyc(user_id)
    assert refreshed.taken_at > first_taken and refreshed.first_name == "Alice"
    assert (await stored_kyc(any_identity, user_id)).taken_at == first_taken  # unchanged: not written again

    any_identity.clock.advance(timedelta(hours=24))  # unchanged, but a day old: stamped again
    restamped = await any_identity.service.refresh_kyc(user_id)
    assert (await stored_kyc(any_identity, user_id)).taken_at == restamped.taken_at

    deriv_sim.engine.books.accounts["CR90000001"].first_name = "Alicia"  # changed on Deriv: stored at once
    any_identity.clock.advance(timedelta(minutes=1))
    await any_identity.service.refresh_kyc(user_id)
    assert (await stored_kyc(any_identity, user_id)).first_name == "Alicia"
    deriv_sim.engine.books.accounts["CR90000001"].first_name = "Alice"

    # binding the same account again is a no-op; another account is refused
    await any_identity.service.bind_deriv_account(user_id=user_id, deriv_token="sim-client1-token")
    with pytest.raises(DerivAccountAlreadyBound):
        await any_identity.service.bind_deriv_account(user_id=user_id, deriv_token="sim-client2-token")


async def test_deriv_binding_refusals(identity: Identity) -> None:
    user_id, _, _ = await new_user(identity)
    with pytest.raises(VirtualAccountRefused):
        await identity.service.bind_deriv_account(user_id=user_id, deriv_token="sim-virtual-token")
    with pytest.raises(DerivBindingRefused, match="scopes"):
        await identity.service.bind_deriv_account(user_id=user_id, deriv_token="sim-client1-read")
    with pytest.raises(DerivBindingRefused):
        await identity.service.bind_deriv_account(user_id=user_id, deriv_token="no-such-token")
    # one Deriv account <-> one PenPay user
    await identity.service.bind_deriv_account(user_id=user_id, deriv_token="sim-client3-token")
    other, _, _ = await new_user(identity)
    with pytest.raises(DerivAccountAlreadyBound):
        await identity.service.bind_deriv_account(user_id=other, deriv_token="sim-client3-token")


async def test_a_v3_token_that_stopped_working_asks_the_user_to_bind_again(
    fresh_identity: Identity, deriv_sim: DerivSimulator
) -> None:
    """Deriv revoked the token, or moved the user to its new API (v3 tokens stop working there):
    the KYC refresh before money moves says DERIV_REBIND_REQUIRED, not a generic refusal."""
    user_id, _, _ = await new_user(fresh_identity)
    await fresh_identity.service.bind_deriv_account(user_id=user_id, deriv_token="sim-client2-token")
    revoked = deriv_sim.engine.books.tokens.pop("sim-client2-token")
    try:
        with pytest.raises(DerivRebindRequired) as refused:
            await fresh_identity.service.refresh_kyc(user_id)
        assert refused.value.reason == "DERIV_REBIND_REQUIRED"
    finally:
        deriv_sim.engine.books.tokens["sim-client2-token"] = revoked
