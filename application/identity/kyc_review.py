"""KYC attestation under four-eyes: one operator proposes, another person approves.

    propose(staff, user, attestation)   the operator who checked the documents; nothing is stored
                                        on the user, the identity is kept encrypted with the proposal
    approve(staff, id)                  someone else: the KycSnapshot is stored, once
    reject(staff, id, reason)           someone else: nothing is stored
    pending(limit)                      the open proposals, for a person to pick one

Like the review queue's actions (application/review/service.py): the proposer can never decide
their own proposal (the attempt is audited), one proposal is open per user, and every proposal,
approval, rejection and refusal is an audit record naming the proposer and the approver,
committed with its effect. The identity fields are personal data: they travel in the proposal's
ciphertext (persistence/kyc_attestations.py) and in the snapshot, never in an audit record or a
log line; the audit names the evidence reference (a ticket or document id) instead.

Approval stores the snapshot exactly once: under the proposal's row lock it is taken only when
the user still has none (a snapshot kept is never overwritten) and is still bound to Deriv's REST
API; otherwise the proposal is REFUSED, recorded, and nothing else changes.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import structlog

from application.identity.errors import UserNotFound
from application.identity.kyc_attestation import KycAttestation, KycAttestationRefused
from application.identity.ports import IdentityUnitOfWork
from application.review.errors import (
    FourEyesRequired,
    ProposalNotOpen,
    ReviewActionNotFound,
)
from domain.shared.errors import InvalidValue
from domain.shared.ids import UserId, new_uuid7
from domain.shared.json_value import JSONValue
from domain.user.user import User

log = structlog.get_logger("penpay.identity.kyc_review")

SUBJECT = "User"
MAX_REASON = 255
MAX_LIST = 200


class AttestationStatus(StrEnum):
    PROPOSED = "PROPOSED"
    EXECUTED = "EXECUTED"  # approved: the snapshot is the user's
    REJECTED = "REJECTED"
    REFUSED = "REFUSED"  # approved, but the user no longer allowed it (a snapshot came first)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposedAttestation:
    """One operator's proposed KYC for a user, and its decision."""

    id: uuid.UUID
    user_id: UserId
    status: AttestationStatus
    attestation: KycAttestation = field(repr=False)  # the identity: personal data
    proposed_at: datetime
    deriv_login_id: str = ""  # the REST account, for the person deciding (not stored here)
    decided_by: str | None = None
    decided_at: datetime | None = None
    outcome: str | None = None

    @property
    def proposed_by(self) -> str:
        return self.attestation.attested_by


class KycAttestations(Protocol):
    """The proposals' storage; the identity is encrypted at rest by the adapter."""

    async def add(self, proposal: ProposedAttestation) -> None:
        """ProposalAlreadyOpen when the user has an open proposal already."""
        ...

    async def get(
        self, attestation_id: uuid.UUID, *, for_update: bool = False
    ) -> ProposedAttestation | None: ...

    async def pending(self, *, limit: int) -> list[ProposedAttestation]:
        """The open proposals, oldest first."""
        ...

    async def decide(self, proposal: ProposedAttestation) -> None:
        """Store the decision (status, decided_by/at, outcome); the proposal is no longer open."""
        ...


class KycReviewUnitOfWork(IdentityUnitOfWork, Protocol):
    @property
    def kyc_attestations(self) -> KycAttestations: ...


def _reason(text: str) -> str:
    cleaned = " ".join((text or "").split())
    if not cleaned or len(cleaned) > MAX_REASON:
        raise InvalidValue(f"reason: 1 to {MAX_REASON} characters", field="reason")
    return cleaned


def _rest_user_without_kyc(user: User | None) -> str | None:
    """Why this user cannot be attested by PenPay, or None."""
    if user is None:
        return "no such user"
    if user.deriv_login_id is None or not user.deriv_login_id.is_rest:
        return (
            "only a user bound to Deriv's new API is attested by PenPay: a v3 account's KYC comes "
            "from Deriv (bind it first)"
        )
    if user.kyc is not None:
        return "this user already has a KYC snapshot; it is kept"
    return None


class KycAttestationReview:
    def __init__(self, *, unit_of_work: Callable[[str], KycReviewUnitOfWork]) -> None:
        self._uow = unit_of_work  # actor -> unit of work auditing as that actor

    async def pending(self, *, limit: int = 50) -> list[ProposedAttestation]:
        async with self._uow("api") as uow:
            return await uow.kyc_attestations.pending(limit=min(max(limit, 1), MAX_LIST))

    async def propose(
        self, *, staff: str, user_id: UserId, attestation: KycAttestation
    ) -> ProposedAttestation:
        attestation = dataclasses.replace(attestation, attested_by=staff)
        async with self._uow(staff) as uow:
            now = uow.clock.now()
            snapshot = attestation.snapshot(now)  # refuses what the policy could never judge
            user = await uow.users.get(user_id)
            if user is None:
                raise UserNotFound("no such user")
            why = _rest_user_without_kyc(user)
            if why is not None:
                raise KycAttestationRefused(why)
            assert user.deriv_login_id is not None
            proposal = ProposedAttestation(
                id=new_uuid7(),
                user_id=user_id,
                status=AttestationStatus.PROPOSED,
                attestation=attestation,
                proposed_at=now,
                deriv_login_id=user.deriv_login_id.value,
            )
            await uow.kyc_attestations.add(proposal)
            uow.audit(
                action="kyc.attestation_proposed",
                subject_type=SUBJECT,
                subject_id=str(user_id),
                details=_details(proposal, acceptable=snapshot.is_acceptable()),
            )
            await uow.commit()
        log.info("kyc.attestation_proposed", user_id=str(user_id), attestation_id=str(proposal.id), by=staff)
        return proposal

    async def approve(self, *, staff: str, attestation_id: uuid.UUID) -> ProposedAttestation:
        async with self._uow(staff) as uow:
            proposal = await self._open(uow, attestation_id)
            if proposal.proposed_by == staff:
                await self._refuse_own(uow, proposal, staff, "kyc.attestation_approval_refused")
                raise FourEyesRequired("an attestation is approved by someone other than its proposer")
            now = uow.clock.now()
            user = await uow.users.get(proposal.user_id)
            why = _rest_user_without_kyc(user)
            if why is not None:
                refused = dataclasses.replace(
                    proposal, status=AttestationStatus.REFUSED, decided_by=staff, decided_at=now, outcome=why
                )
                await uow.kyc_attestations.decide(refused)
                uow.audit(
                    action="kyc.attestation_refused",
                    subject_type=SUBJECT,
                    subject_id=str(proposal.user_id),
                    details=_details(refused),
                )
                await uow.commit()
                raise KycAttestationRefused(why)
            assert user is not None
            snapshot = proposal.attestation.snapshot(now)
            user.take_kyc_snapshot(snapshot, now=now)
            await uow.users.save(user)  # optimistic: a concurrent change of the user aborts this
            verdict = "acceptable" if snapshot.is_acceptable() else "not acceptable to the policy"
            executed = dataclasses.replace(
                proposal,
                status=AttestationStatus.EXECUTED,
                decided_by=staff,
                decided_at=now,
                outcome=f"KYC snapshot stored ({verdict})",
            )
            await uow.kyc_attestations.decide(executed)
            uow.audit(
                action="KycAttestedByOperator",
                subject_type=SUBJECT,
                subject_id=str(proposal.user_id),
                details=_details(executed, acceptable=snapshot.is_acceptable(), four_eyes=True),
            )
            await uow.commit()
        log.info(
            "kyc.attestation_approved",
            user_id=str(proposal.user_id),
            attestation_id=str(proposal.id),
            by=staff,
        )
        return executed

    async def reject(self, *, staff: str, attestation_id: uuid.UUID, reason: str) -> ProposedAttestation:
        why = _reason(reason)
        async with self._uow(staff) as uow:
            proposal = await self._open(uow, attestation_id)
            if proposal.proposed_by == staff:
                await self._refuse_own(uow, proposal, staff, "kyc.attestation_rejection_refused")
                raise FourEyesRequired("an attestation is rejected by someone other than its proposer")
            rejected = dataclasses.replace(
                proposal,
                status=AttestationStatus.REJECTED,
                decided_by=staff,
                decided_at=uow.clock.now(),
                outcome=why,
            )
            await uow.kyc_attestations.decide(rejected)
            uow.audit(
                action="kyc.attestation_rejected",
                subject_type=SUBJECT,
                subject_id=str(proposal.user_id),
                details=_details(rejected),
            )
            await uow.commit()
        return rejected

    async def reveal(self, *, staff: str, attestation_id: uuid.UUID, reason: str) -> ProposedAttestation:
        """The identity as proposed, for the person comparing it with the documents: who asked and
        why is an audit record committed before it is given."""
        why = _reason(reason)
        async with self._uow(staff) as uow:
            proposal = await uow.kyc_attestations.get(attestation_id)
            if proposal is None:
                raise ReviewActionNotFound("no such KYC attestation", field="attestation_id")
            uow.audit(
                action="ops.pii_revealed",
                subject_type=SUBJECT,
                subject_id=str(proposal.user_id),
                details={
                    "field": "kyc_attestation",
                    "attestation_id": str(proposal.id),
                    "revealed_to": staff,
                    "reason": why,
                },
            )
            await uow.commit()
        return proposal

    @staticmethod
    async def _open(uow: KycReviewUnitOfWork, attestation_id: uuid.UUID) -> ProposedAttestation:
        proposal = await uow.kyc_attestations.get(attestation_id, for_update=True)
        if proposal is None:
            raise ReviewActionNotFound("no such KYC attestation", field="attestation_id")
        if proposal.status is not AttestationStatus.PROPOSED:
            raise ProposalNotOpen(f"this attestation is already {proposal.status.value}")
        return proposal

    @staticmethod
    async def _refuse_own(
        uow: KycReviewUnitOfWork, proposal: ProposedAttestation, staff: str, action: str
    ) -> None:
        uow.audit(
            action=action,
            subject_type=SUBJECT,
            subject_id=str(proposal.user_id),
            details={**_details(proposal), "refused_approver": staff, "why": "four-eyes"},
        )
        await uow.commit()  # the refused attempt is on record


def _details(p: ProposedAttestation, **extra: JSONValue) -> dict[str, JSONValue]:
    """An audit record's details: who, which proposal, where the documents are. No identity."""
    details: dict[str, JSONValue] = {
        "attestation_id": str(p.id),
        "status": p.status.value,
        "evidence": p.attestation.evidence,
        "proposed_by": p.proposed_by,
        "approved_by": p.decided_by,
    }
    if p.deriv_login_id:
        details["deriv_login_id"] = p.deriv_login_id
    if p.outcome is not None:
        details["outcome"] = p.outcome
    details.update(extra)
    return details
