"""Proposed KYC attestations (`kyc_attestations`): the KycAttestations port on a unit of work's
connection. The identity fields (names, date of birth, residence, citizenship) are one AES-GCM
ciphertext under the PII cipher, as the user's KycSnapshot is; its associated data binds it to
this table, this user and this proposal, so it decrypts nowhere else."""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from application.identity.kyc_attestation import KycAttestation
from application.identity.kyc_review import AttestationStatus, ProposedAttestation
from application.review.errors import ProposalAlreadyOpen, ProposalNotOpen
from domain.shared.ids import UserId
from persistence.tables import deriv_accounts, kyc_attestations
from security.pii import PiiCipher, default_cipher

_k, _da = kyc_attestations, deriv_accounts
_SELECT = select(_k, _da.c.deriv_login_id).select_from(
    _k.outerjoin(_da, and_(_da.c.user_id == _k.c.user_id, _da.c.currency == "USD"))
)


def _aad(user_id: UserId | uuid.UUID, attestation_id: uuid.UUID) -> str:
    return f"kyc_attestations.identity_enc:{user_id}:{attestation_id}"


class SqlKycAttestations:
    def __init__(self, connection: AsyncConnection, cipher: PiiCipher | None = None) -> None:
        self._connection = connection
        self._cipher = cipher or default_cipher()

    async def add(self, proposal: ProposedAttestation) -> None:
        a = proposal.attestation
        identity = json.dumps(
            {
                "first_name": a.first_name,
                "last_name": a.last_name,
                "date_of_birth": a.date_of_birth.isoformat(),
                "residence": a.residence,
                "citizen": a.citizen,
            }
        )
        try:
            async with self._connection.begin_nested():
                await self._connection.execute(
                    _k.insert().values(
                        id=proposal.id,
                        user_id=proposal.user_id.value,
                        open_user_id=proposal.user_id.value,
                        status=proposal.status.value,
                        identity_enc=self._cipher.encrypt(identity, aad=_aad(proposal.user_id, proposal.id)),
                        pii_key_id=self._cipher.current_key_id,
                        evidence=a.evidence,
                        proposed_by=a.attested_by,
                        proposed_at=proposal.proposed_at,
                    )
                )
        except IntegrityError:
            raise ProposalAlreadyOpen(
                "this user already has an open KYC attestation: approve or reject it"
            ) from None

    async def get(self, attestation_id: uuid.UUID, *, for_update: bool = False) -> ProposedAttestation | None:
        query = _SELECT.where(_k.c.id == attestation_id)
        if for_update:
            query = query.with_for_update()
        row = (await self._connection.execute(query)).first()
        return None if row is None else self._of(row)

    async def pending(self, *, limit: int) -> list[ProposedAttestation]:
        rows = await self._connection.execute(
            _SELECT.where(_k.c.status == AttestationStatus.PROPOSED.value)
            .order_by(_k.c.proposed_at, _k.c.id)
            .limit(limit)
        )
        return [self._of(row) for row in rows]

    async def decide(self, proposal: ProposedAttestation) -> None:
        result = await self._connection.execute(
            update(_k)
            .where(_k.c.id == proposal.id, _k.c.status == AttestationStatus.PROPOSED.value)
            .values(
                status=proposal.status.value,
                open_user_id=None,
                decided_by=proposal.decided_by,
                decided_at=proposal.decided_at,
                outcome=None if proposal.outcome is None else proposal.outcome[:255],
            )
        )
        if result.rowcount != 1:  # decided meanwhile (SQLite takes no row lock): nothing of this commits
            raise ProposalNotOpen("this attestation was decided meanwhile")

    def _of(self, row: Any) -> ProposedAttestation:
        identity = json.loads(self._cipher.decrypt(row.identity_enc, aad=_aad(row.user_id, row.id)))
        return ProposedAttestation(
            id=row.id,
            user_id=UserId(row.user_id),
            status=AttestationStatus(row.status),
            attestation=KycAttestation(
                first_name=identity["first_name"],
                last_name=identity["last_name"],
                date_of_birth=date.fromisoformat(identity["date_of_birth"]),
                residence=identity["residence"],
                citizen=identity["citizen"],
                evidence=row.evidence,
                attested_by=row.proposed_by,
            ),
            proposed_at=row.proposed_at,
            deriv_login_id=row.deriv_login_id or "",
            decided_by=row.decided_by,
            decided_at=row.decided_at,
            outcome=row.outcome,
        )
