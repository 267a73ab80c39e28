"""KYC for a user whose Deriv account is on the new (REST) API only: PenPay's own attestation.

Deriv's new API shares no profile (no get_settings: only the account's nickname and the payment
settings deposit_enabled / withdraw_enabled / show_real_name), so a user who never had a v3
account has no KycSnapshot, and the compliance policy refuses their money (KYC_UNAVAILABLE). The
way out is a person: PenPay's support checks the user's identity documents and an operator records
what they show: proposed by one operator and approved by another (OpsService
ProposeKycAttestation / ApproveKycAttestation, application/identity/kyc_review.py), or, break-glass
only, by one operator alone (`penpay kyc attest --break-glass INCIDENT`). The snapshot it makes is
judged by the same policy as one from Deriv (names, date of birth, residence in Kenya, limits);
nothing is waived.

Only for a REST-bound user without a snapshot: a v3 user's KYC comes from Deriv, and a snapshot
already kept (from the v3 account, or attested before) is not overwritten here. The audit record
names the operator and the evidence reference (a ticket or document id, no personal data).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import structlog

from application.identity.errors import UserNotFound
from application.identity.ports import IdentityUnitOfWork
from domain.shared.clock import Clock
from domain.shared.errors import DomainError
from domain.shared.ids import UserId
from domain.user.kyc_snapshot import KycSnapshot

log = structlog.get_logger("penpay.identity.kyc_attestation")


MAX_NAME = 100  # user_profile's columns
MAX_EVIDENCE = 128


class KycAttestationRefused(DomainError):
    reason = "KYC_ATTESTATION_REFUSED"


@dataclass(frozen=True, slots=True, kw_only=True)
class KycAttestation:
    """What the operator saw on the user's documents, and who saw it where. The identity fields
    are personal data: kept out of repr, so no log line or traceback prints them."""

    first_name: str = field(repr=False)
    last_name: str = field(repr=False)
    date_of_birth: date = field(repr=False)
    residence: str = field(repr=False)  # ISO 3166-1 alpha-2
    citizen: str | None = field(default=None, repr=False)
    evidence: str  # where the documents are (ticket / document id), never the documents
    attested_by: str  # the operator

    def snapshot(self, now: datetime) -> KycSnapshot:
        for name in ("first_name", "last_name", "evidence", "attested_by"):
            if not getattr(self, name).strip():
                raise KycAttestationRefused(f"{name.replace('_', ' ')} must not be empty", field=name)
        for name, longest in (("first_name", MAX_NAME), ("last_name", MAX_NAME), ("evidence", MAX_EVIDENCE)):
            if len(getattr(self, name).strip()) > longest:
                raise KycAttestationRefused(
                    f"{name.replace('_', ' ')}: {longest} characters at most", field=name
                )
        if len(self.attested_by) > 64:  # an audit actor / proposed_by column: 64 characters at most
            raise KycAttestationRefused("the operator name is too long", field="attested_by")
        for name in ("residence", "citizen"):
            value = getattr(self, name)
            if value is not None and not (len(value) == 2 and value.isalpha()):
                raise KycAttestationRefused(f"{name} must be a two-letter country code", field=name)
        if self.date_of_birth >= now.date():
            raise KycAttestationRefused("the date of birth must be in the past", field="date_of_birth")
        birth = datetime(
            self.date_of_birth.year, self.date_of_birth.month, self.date_of_birth.day, tzinfo=UTC
        )
        return KycSnapshot(
            first_name=self.first_name.strip(),
            last_name=self.last_name.strip(),
            date_of_birth=int(birth.timestamp()),  # epoch seconds, as Deriv sends it
            citizen=self.citizen.lower() if self.citizen else None,
            residence=self.residence.lower(),
            taken_at=now,
        )


async def attest_kyc(
    unit_of_work: Callable[[], IdentityUnitOfWork],
    clock: Clock,
    user_id: UserId,
    attestation: KycAttestation,
    *,
    incident: str | None = None,
) -> KycSnapshot:
    """Record the operator's KycSnapshot for a REST-only user at once, one person alone: the
    break-glass path of `penpay kyc attest` (the normal path is four-eyes,
    application/identity/kyc_review.py). `incident` names why the glass was broken (audited).
    KycAttestationRefused when the user cannot be attested."""
    now = clock.now()
    snapshot = attestation.snapshot(now)
    async with unit_of_work() as uow:
        user = await uow.users.get(user_id)
        if user is None:
            raise UserNotFound("no such user")
        if user.deriv_login_id is None or not user.deriv_login_id.is_rest:
            raise KycAttestationRefused(
                "only a user bound to Deriv's new API is attested by PenPay: a v3 account's KYC comes "
                "from Deriv (bind it first)"
            )
        if user.kyc is not None:
            raise KycAttestationRefused("this user already has a KYC snapshot; it is kept")
        user.take_kyc_snapshot(snapshot, now=now)
        await uow.users.save(user)
        uow.audit(
            action="KycAttestedByOperator",
            subject_type="User",
            subject_id=str(user_id),
            details={
                "attested_by": attestation.attested_by,
                "evidence": attestation.evidence,
                "deriv_login_id": user.deriv_login_id.value,
                "residence": snapshot.residence,
                "acceptable": snapshot.is_acceptable(),
                "four_eyes": False,
                "break_glass": True,
                "incident": incident,
            },
        )
        await uow.commit()
    log.warning("kyc.attested_break_glass", user_id=str(user_id), attested_by=attestation.attested_by)
    return snapshot
