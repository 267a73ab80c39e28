"""KYC/AML policy the payments use cases call before any money moves (PEC 14).

Refuses unless: the phone is verified, a real-money USD Deriv account is bound, and a fresh
KycSnapshot (refreshed from Deriv right before the check) is acceptable with an allowed
residence. A new-API (REST) account: Deriv's new API shares no profile, so the snapshot is the one
taken from the user's v3 account (at the move, or earlier) or, for a user who never had one, the
one an operator attested from the user's documents (kyc_attestation.py), used once the REST token
is checked to still open the bound account; with none, KYC_UNAVAILABLE.
Then per-user limits from the `transactions` table: a daily and a weekly amount per
currency (failed and reversed transactions do not count) and a velocity rule (at most N
transactions started per hour). A breach refuses, or holds for review when configured so, and
is written to the audit log in a transaction of its own (it stays even though the movement does not happen).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

import structlog

from application.identity.errors import ComplianceRefused, UserNotFound
from application.identity.ports import IdentityUnitOfWork, KnownUser, TransactionStats, Usage, UsageQuery
from application.identity.rate_limits import RateLimitGuard
from domain.shared.clock import Clock
from domain.shared.ids import UserId
from domain.shared.json_value import JSONValue
from domain.user.kyc_snapshot import KycSnapshot
from domain.user.user import User
from domain.wallet.money import Money

log = structlog.get_logger("penpay.compliance")


T = TypeVar("T")


async def _value(value: T) -> T:
    return value


class RefreshKyc(Protocol):
    """IdentityService.refresh_kyc"""

    def __call__(self, user_id: UserId, *, known: KnownUser | None = None) -> Awaitable[KycSnapshot]: ...


@dataclass(frozen=True, slots=True)
class AmlLimits:
    # Minor units per currency. KES: M-Pesa's own per-day ceiling is KES 500,000.
    daily_minor: Mapping[str, int] = field(default_factory=lambda: {"KES": 300_000_00, "USD": 2_500_00})
    weekly_minor: Mapping[str, int] = field(default_factory=lambda: {"KES": 1_000_000_00, "USD": 8_000_00})
    max_transactions_per_hour: int = 5
    allowed_residences: frozenset[str] = frozenset({"ke"})
    hold_on_limit_breach: bool = False  # False: refuse; True: the caller holds for manual review


class CompliancePolicy:
    def __init__(
        self,
        *,
        unit_of_work: Callable[[], IdentityUnitOfWork],
        stats: TransactionStats,
        refresh_kyc: RefreshKyc,
        clock: Clock,
        limits: AmlLimits | None = None,
        rate_limits: RateLimitGuard | None = None,
    ) -> None:
        self._uow = unit_of_work
        self._stats = stats
        self._refresh_kyc = refresh_kyc
        self._clock = clock
        self.limits = limits or AmlLimits()
        self._rate_limits = rate_limits

    async def check_money_movement(
        self,
        *,
        user_id: UserId,
        amount: Money,
        client_ip: str | None = None,
        refresh: bool = True,
        known: KnownUser | None = None,
    ) -> None:
        """Return if `amount` may move for this user now; raise ComplianceRefused otherwise.
        `known`: the user (and token) the caller read in this request, judged without reading again."""
        if known is not None and known.user.id == user_id:
            user: User | None = known.user
        else:
            async with self._uow() as uow:
                user = await uow.users.get(user_id)
        if user is None:
            raise UserNotFound("no such user")
        if self._rate_limits is not None:
            await self._rate_limits.check("money", ip=client_ip, phone=user.phone.value)
        if not user.phone_verified:
            await self._refuse(user_id, "PHONE_NOT_VERIFIED", "verify your phone number first", amount)
        if user.deriv_login_id is None:
            await self._refuse(user_id, "DERIV_NOT_BOUND", "bind your Deriv USD account first", amount)
        if user.deriv_login_id is not None and user.deriv_login_id.is_rest and user.kyc is None:
            # Deriv's new API shares no profile (no get_settings): without the snapshot kept from the
            # user's v3 account, or one PenPay attested, there is nothing to judge: no money moves.
            await self._refuse(
                user_id,
                "KYC_UNAVAILABLE",
                "Deriv's new API does not share your profile with PenPay: send PenPay support your "
                "identity document so they can verify you; money moves once they have",
                amount,
            )
        now = self._clock.now()
        currency = amount.currency.value
        windows = self._windows(currency)
        if known is not None and known.usage is not None:
            # read by the caller in its one read (usage_query): only the KYC is fetched here
            kyc: KycSnapshot | BaseException | None = (
                await self._refresh_kyc(user_id, known=known) if refresh else user.kyc
            )
            counted: Usage | BaseException = known.usage
        else:
            # The KYC from Deriv and the one read for the velocity rule and every amount window, at
            # the same time (a round trip to Deriv and one to the database); judged below in order.
            query = self.usage_query(amount, now)
            kyc, counted = await asyncio.gather(
                self._refresh_kyc(user_id, known=known) if refresh else _value(user.kyc),
                self._stats.usage(
                    user_id, currency, count_since=query.count_since, amounts_since=query.amounts_since
                ),
                return_exceptions=True,
            )
        if isinstance(kyc, BaseException):
            raise kyc
        if isinstance(counted, BaseException):
            raise counted
        snapshot, usage = kyc, counted
        if snapshot is None or not snapshot.is_acceptable():
            missing = ", ".join(snapshot.missing_for_payments()) if snapshot else "everything"
            await self._refuse(
                user_id, "KYC_INCOMPLETE", f"complete your Deriv profile ({missing}) first", amount
            )
        assert snapshot is not None
        if snapshot.residence not in self.limits.allowed_residences:
            await self._refuse(
                user_id, "RESIDENCE_NOT_SUPPORTED", "PenPay serves residents of Kenya only", amount
            )

        if usage.started >= self.limits.max_transactions_per_hour:
            await self._refuse(
                user_id,
                "VELOCITY",
                f"at most {self.limits.max_transactions_per_hour} transactions per hour",
                amount,
                limit_breach=True,
            )
        for (rule, _, ceiling), used in zip(windows, usage.amounts, strict=True):
            if used + amount.amount_minor > ceiling:
                await self._refuse(
                    user_id,
                    rule,
                    f"this would exceed the {rule.split('_')[0].lower()} limit of "
                    f"{Money.of_minor(ceiling, amount.currency).to_decimal_string()} {currency}",
                    amount,
                    limit_breach=True,
                    extra={"used_minor": used, "limit_minor": ceiling},
                )

    def _windows(self, currency: str) -> list[tuple[str, timedelta, int]]:
        """The amount limits of `currency`: (rule, window, ceiling in minor units)."""
        return [
            (rule, window, ceiling)
            for rule, window, table in (
                ("DAILY_LIMIT", timedelta(days=1), self.limits.daily_minor),
                ("WEEKLY_LIMIT", timedelta(days=7), self.limits.weekly_minor),
            )
            if (ceiling := table.get(currency)) is not None
        ]

    def usage_query(self, amount: Money, now: datetime) -> UsageQuery:
        """The figures check_money_movement judges `amount` by, for a caller that reads them itself
        (in a read it makes anyway) and hands them over in KnownUser.usage."""
        return UsageQuery(
            currency=amount.currency.value,
            count_since=now - timedelta(hours=1),
            amounts_since=tuple(now - window for _, window, _ in self._windows(amount.currency.value)),
        )

    async def _refuse(
        self,
        user_id: UserId,
        rule: str,
        message: str,
        amount: Money,
        *,
        limit_breach: bool = False,
        extra: dict[str, JSONValue] | None = None,
    ) -> None:
        hold = limit_breach and self.limits.hold_on_limit_breach
        async with self._uow() as uow:
            uow.audit(
                action="ComplianceHeld" if hold else "ComplianceRefused",
                subject_type="User",
                subject_id=str(user_id),
                details={"rule": rule, "amount": amount.to_json(), **(extra or {})},
            )
            await uow.commit()
        log.warning("compliance.breach", user_id=str(user_id), rule=rule, hold=hold)
        raise ComplianceRefused(message, rule=rule, hold_for_review=hold)
