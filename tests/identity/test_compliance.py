"""The KYC/AML policy: prerequisites, daily/weekly limits and velocity from `transactions`,
audited refusals."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert, select

from application.identity.compliance import AmlLimits, CompliancePolicy
from application.identity.errors import ComplianceRefused, RateLimited
from application.identity.ports import VerificationPurpose
from application.identity.rate_limits import RateLimitGuard, RateRule
from domain.shared.ids import UserId, new_uuid7
from domain.wallet.money import Currency, Money
from persistence.tables import audit_logs, transactions
from persistence.transaction_stats import SqlTransactionStats
from security.rate_limit import InProcessRateLimiter

from .conftest import PASSWORD, Identity, unique_email, unique_phone

pytestmark = pytest.mark.integration


async def ready_user(
    identity: Identity, *, deriv_token: str = "sim-client1-token", verify: bool = True
) -> UserId:
    phone = unique_phone()
    user_id = await identity.service.register(email=unique_email(), phone=phone, password=PASSWORD)
    if verify:
        await identity.service.request_verification(user_id=user_id, purpose=VerificationPurpose.PHONE)
        code = identity.notifier.latest("sms", phone).body[-6:]
        await identity.service.confirm_verification(
            user_id=user_id, purpose=VerificationPurpose.PHONE, code=code
        )
    if deriv_token:
        await identity.service.bind_deriv_account(user_id=user_id, deriv_token=deriv_token)
    return user_id


async def add_transaction(
    identity: Identity,
    user_id: UserId,
    minor: int,
    *,
    at: datetime,
    status: str = "COMPLETED",
    currency: str = "KES",
) -> None:
    async with identity.engine.begin() as connection:
        await connection.execute(
            insert(transactions),
            {
                "id": new_uuid7(),
                "user_id": user_id.value,
                "type": "DEPOSIT",
                "status": status,
                "amount_cents": minor,
                "amount_currency": currency,
                "phone": "254700000000",
                "deriv_login_id": "CR90000001",
                "idempotency_key_hash": secrets.token_hex(32),
                "version": 1,
                "created_at": at,
                "updated_at": at,
            },
        )


def policy(
    identity: Identity, limits: AmlLimits | None = None, guard: RateLimitGuard | None = None
) -> CompliancePolicy:
    return CompliancePolicy(
        unit_of_work=identity.uow,
        stats=SqlTransactionStats(identity.engine),
        refresh_kyc=identity.service.refresh_kyc,
        clock=identity.clock,
        limits=limits,
        rate_limits=guard,
    )


async def audited_rules(identity: Identity, user_id: UserId) -> list[str]:
    import json

    async with identity.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(audit_logs.c.action, audit_logs.c.details).where(
                    audit_logs.c.subject_id == str(user_id)
                )
            )
        ).all()
    return [
        json.loads(r.details)["rule"] for r in rows if r.action in ("ComplianceRefused", "ComplianceHeld")
    ]


KES = Currency.KES


async def test_prerequisites_are_enforced_and_refusals_audited(fresh_identity: Identity) -> None:
    check = policy(fresh_identity)
    unverified = await ready_user(fresh_identity, verify=False, deriv_token="")
    with pytest.raises(ComplianceRefused) as refused:
        await check.check_money_movement(user_id=unverified, amount=Money.of_minor(100_00, KES))
    assert refused.value.rule == "PHONE_NOT_VERIFIED"

    unbound = await ready_user(fresh_identity, deriv_token="")
    with pytest.raises(ComplianceRefused) as refused:
        await check.check_money_movement(user_id=unbound, amount=Money.of_minor(100_00, KES))
    assert refused.value.rule == "DERIV_NOT_BOUND"

    ugandan = await ready_user(fresh_identity, deriv_token="sim-client4-token")
    with pytest.raises(ComplianceRefused) as refused:
        await check.check_money_movement(user_id=ugandan, amount=Money.of_minor(100_00, KES))
    assert refused.value.rule == "RESIDENCE_NOT_SUPPORTED"

    ok = await ready_user(fresh_identity)
    await check.check_money_movement(user_id=ok, amount=Money.of_minor(100_00, KES))
    assert await audited_rules(fresh_identity, unverified) == ["PHONE_NOT_VERIFIED"]
    assert await audited_rules(fresh_identity, unbound) == ["DERIV_NOT_BOUND"]
    assert await audited_rules(fresh_identity, ok) == []


async def test_daily_weekly_and_velocity_limits_from_the_transactions_table(fresh_identity: Identity) -> None:
    user_id = await ready_user(fresh_identity)
    now = fresh_identity.clock.now()
    limits = AmlLimits(
        daily_minor={"KES": 10_000_00}, weekly_minor={"KES": 30_000_00}, max_transactions_per_hour=3
    )
    check = policy(fresh_identity, limits)

    await add_transaction(fresh_identity, user_id, 6_000_00, at=now - timedelta(hours=3))
    await add_transaction(
        fresh_identity, user_id, 9_000_00, at=now - timedelta(hours=5), status="FAILED"
    )  # no money moved
    await check.check_money_movement(
        user_id=user_id, amount=Money.of_minor(4_000_00, KES)
    )  # exactly the daily limit
    with pytest.raises(ComplianceRefused) as refused:
        await check.check_money_movement(user_id=user_id, amount=Money.of_minor(4_000_01, KES))
    assert refused.value.rule == "DAILY_LIMIT" and not refused.value.hold_for_review

    for days in (2, 3, 4):
        await add_transaction(fresh_identity, user_id, 7_000_00, at=now - timedelta(days=days))
    with pytest.raises(ComplianceRefused) as refused:
        await check.check_money_movement(user_id=user_id, amount=Money.of_minor(3_500_00, KES))
    assert refused.value.rule == "WEEKLY_LIMIT"
    await check.check_money_movement(
        user_id=user_id, amount=Money.of_minor(3_000_00, Currency.USD)
    )  # other currency

    for minutes in (5, 10, 15):
        await add_transaction(
            fresh_identity, user_id, 1_00, at=now - timedelta(minutes=minutes), status="FAILED"
        )
    held = policy(fresh_identity, AmlLimits(max_transactions_per_hour=3, hold_on_limit_breach=True))
    with pytest.raises(ComplianceRefused) as refused:
        await held.check_money_movement(user_id=user_id, amount=Money.of_minor(1_00, KES))
    assert refused.value.rule == "VELOCITY" and refused.value.hold_for_review
    assert await audited_rules(fresh_identity, user_id) == ["DAILY_LIMIT", "WEEKLY_LIMIT", "VELOCITY"]


async def test_money_calls_are_rate_limited_per_phone(fresh_identity: Identity) -> None:
    user_id = await ready_user(fresh_identity)
    guard = RateLimitGuard(InProcessRateLimiter(), {"money": (RateRule("phone", 2, 60),)})
    check = policy(fresh_identity, guard=guard)
    for _ in range(2):
        await check.check_money_movement(user_id=user_id, amount=Money.of_minor(1_00, KES), refresh=False)
    with pytest.raises(RateLimited) as limited:
        await check.check_money_movement(user_id=user_id, amount=Money.of_minor(1_00, KES), refresh=False)
    assert 1 <= limited.value.retry_after_seconds <= 60
