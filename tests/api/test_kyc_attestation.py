"""KYC attestation under four-eyes, over a real server on MariaDB and SQLite: an operator proposes
the identity of a REST-only user, a different person approves it and the snapshot is stored once.
The identity is personal data: encrypted at rest, masked in lists, never in the audit chain or the
logs; unmasking it is audited first."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest
from sqlalchemy import select

from application.identity.kyc_attestation import KycAttestation, attest_kyc
from domain.shared.ids import UserId
from domain.user.deriv_login_id import DerivLoginId
from penpay.ops.v1 import ops_pb2 as pb
from penpay_api.auth import APPROVER_ROLE, OPERATOR_ROLE, VIEWER_ROLE
from penpay_api.errors import ParsedStatus
from penpay_api.errors import parse_status as parse_trailers
from persistence.audit import verify_chain
from persistence.tables import audit_logs, domain_events, kyc_attestations, user_compliance
from persistence.unit_of_work import SqlUnitOfWork

from .conftest import Harness, bearer

pytestmark = pytest.mark.integration

FIRST, LAST, BORN = "Carolyne", "Njeri", "1991-03-14"
IDENTITY = pb.KycIdentity(first_name=FIRST, last_name=LAST, date_of_birth=BORN, residence="ke")


def parse_status(metadata: Any) -> ParsedStatus:
    parsed = parse_trailers(metadata)
    assert parsed is not None
    return parsed


def reason_of(error: grpc.aio.AioRpcError) -> str:
    parsed = parse_status(error.trailing_metadata())
    assert parsed is not None and parsed.error_info is not None
    return str(parsed.error_info.reason)


def staff(api: Harness, name: str, *roles: str) -> tuple[tuple[str, str], ...]:
    token, _ = api.tokens.issue_operator_token(operator=name, now=api.clock.now(), roles=roles)
    return bearer(token)


async def rest_user(api: Harness, nickname: str) -> str:
    """A user bound to Deriv's new API only: no profile to read, so no KYC snapshot."""
    account = await api.new_account()
    async with SqlUnitOfWork(api.core.engine, clock=api.clock, cipher=api.core.pii) as uow:
        user = await uow.users.get(UserId.from_str(account.user_id))
        assert user is not None
        user.bind_deriv_account(DerivLoginId.rest(nickname), now=api.clock.now())
        await uow.users.save(user)
        await uow.commit()
    return account.user_id


async def kyc_of(api: Harness, user_id: str) -> Any:
    async with SqlUnitOfWork(api.core.engine, clock=api.clock, cipher=api.core.pii) as uow:
        user = await uow.users.get(UserId.from_str(user_id))
    assert user is not None
    return user.kyc


async def audit_rows(api: Harness, user_id: str) -> list[Any]:
    async with api.core.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(audit_logs.c.actor, audit_logs.c.action, audit_logs.c.details)
                .where(audit_logs.c.subject_id == user_id)
                .order_by(audit_logs.c.id)
            )
        ).all()
        assert (await verify_chain(connection)).ok
    return [
        r
        for r in rows
        if r.action.startswith("kyc.") or r.action in ("KycAttestedByOperator", "ops.pii_revealed")
    ]


async def refused(call: Any, request: Any, metadata: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call(request, metadata=metadata)
    return error.value


async def test_an_attestation_takes_two_people_and_stores_the_snapshot_once(
    api: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    user_id = await rest_user(api, "carol_n")
    olga = staff(api, "olga", OPERATOR_ROLE, APPROVER_ROLE)  # both roles, still one person
    amos = staff(api, "amos", APPROVER_ROLE)
    vera = staff(api, "vera", VIEWER_ROLE)
    propose = pb.ProposeKycAttestationRequest(user_id=user_id, identity=IDENTITY, evidence="TICKET-7")

    viewer = await refused(api.ops.ProposeKycAttestation, propose, vera)
    assert (viewer.code(), reason_of(viewer)) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED")
    bad = pb.ProposeKycAttestationRequest(
        user_id=user_id, identity=pb.KycIdentity(first_name=FIRST, last_name=LAST, date_of_birth="14/03/1991",
                                                 residence="ke"), evidence="TICKET-7",
    )  # fmt: skip
    assert (
        await refused(api.ops.ProposeKycAttestation, bad, olga)
    ).code() is grpc.StatusCode.INVALID_ARGUMENT
    kenya = pb.ProposeKycAttestationRequest(
        user_id=user_id, evidence="TICKET-7",
        identity=pb.KycIdentity(first_name=FIRST, last_name=LAST, date_of_birth=BORN, residence="kenya"),
    )  # fmt: skip
    named = await refused(api.ops.ProposeKycAttestation, kenya, olga)
    assert [v.field for v in parse_status(named.trailing_metadata()).violations] == ["identity.residence"]

    proposed = (await api.ops.ProposeKycAttestation(propose, metadata=olga)).attestation
    assert proposed.status == "PROPOSED" and proposed.proposed_by == "operator:olga"
    assert (proposed.identity.first_name, proposed.identity.last_name, proposed.identity.date_of_birth) == (
        "C***",
        "N***",
        "",
    )
    assert proposed.acceptable and proposed.deriv_login_id == "@carol_n"
    assert await kyc_of(api, user_id) is None  # nothing on the user before a second person
    again = await refused(api.ops.ProposeKycAttestation, propose, staff(api, "otto", OPERATOR_ROLE))
    assert reason_of(again) == "REVIEW_ACTION_ALREADY_OPEN"

    listed = await api.ops.ListKycAttestations(pb.ListKycAttestationsRequest(), metadata=vera)
    assert [a.attestation_id for a in listed.attestations] == [proposed.attestation_id]
    assert FIRST not in str(listed) and LAST not in str(listed) and BORN not in str(listed)

    # The proposer cannot decide it, whatever roles the token holds; the attempt is on record.
    own = await refused(
        api.ops.ApproveKycAttestation,
        pb.ApproveKycAttestationRequest(attestation_id=proposed.attestation_id),
        olga,
    )
    assert (own.code(), reason_of(own)) == (grpc.StatusCode.PERMISSION_DENIED, "FOUR_EYES_REQUIRED")
    assert await kyc_of(api, user_id) is None

    # The approver compares the identity with the documents: unmasked, audited first.
    shown = await api.ops.RevealKycAttestation(
        pb.RevealKycAttestationRequest(attestation_id=proposed.attestation_id, reason="checking TICKET-7"),
        metadata=amos,
    )
    assert (shown.attestation.identity.first_name, shown.attestation.identity.date_of_birth) == (FIRST, BORN)
    approved = (
        await api.ops.ApproveKycAttestation(
            pb.ApproveKycAttestationRequest(attestation_id=proposed.attestation_id), metadata=amos
        )
    ).attestation
    assert (approved.status, approved.decided_by) == ("EXECUTED", "operator:amos")
    kyc = await kyc_of(api, user_id)
    assert (kyc.first_name, kyc.last_name, kyc.residence) == (FIRST, LAST, "ke") and kyc.is_acceptable()

    twice = await refused(
        api.ops.ApproveKycAttestation,
        pb.ApproveKycAttestationRequest(attestation_id=proposed.attestation_id),
        amos,
    )
    assert reason_of(twice) == "REVIEW_ACTION_NOT_OPEN"
    kept = await refused(api.ops.ProposeKycAttestation, propose, staff(api, "otto", OPERATOR_ROLE))
    assert reason_of(kept) == "KYC_ATTESTATION_REFUSED"  # a snapshot kept is never replaced

    rows = await audit_rows(api, user_id)
    assert [(r.actor, r.action) for r in rows] == [
        ("operator:olga", "kyc.attestation_proposed"),
        ("operator:olga", "kyc.attestation_approval_refused"),
        ("operator:amos", "ops.pii_revealed"),
        ("operator:amos", "KycAttestedByOperator"),
    ]
    attested = json.loads(rows[-1].details)
    assert (attested["proposed_by"], attested["approved_by"], attested["evidence"]) == (
        "operator:olga",
        "operator:amos",
        "TICKET-7",
    )
    everything = " ".join(r.details for r in rows) + capsys.readouterr().out
    assert FIRST not in everything and LAST not in everything and BORN not in everything  # no PII
    async with api.core.engine.connect() as connection:
        stored = (await connection.execute(select(kyc_attestations.c.identity_enc))).scalars().all()
    assert stored and all(FIRST.encode() not in blob and LAST.encode() not in blob for blob in stored)


async def test_a_snapshot_that_came_first_is_kept_and_a_rejection_stores_nothing(api: Harness) -> None:
    olga, amos = staff(api, "olga", OPERATOR_ROLE), staff(api, "amos", APPROVER_ROLE)

    # A snapshot stored between the proposal and its approval (here: the break-glass command's
    # path) is kept; the approval is REFUSED and recorded.
    first = await rest_user(api, "dan_k")
    proposal = (
        await api.ops.ProposeKycAttestation(
            pb.ProposeKycAttestationRequest(user_id=first, identity=IDENTITY, evidence="TICKET-8"),
            metadata=olga,
        )
    ).attestation
    await attest_kyc(
        lambda: api.core.unit_of_work(actor="operator:bg"),
        api.clock,
        UserId.from_str(first),
        KycAttestation(
            first_name="Daniel", last_name="Kip", date_of_birth=__import__("datetime").date(1980, 1, 2),
            residence="ke", evidence="INCIDENT-1", attested_by="bg",
        ),
    )  # fmt: skip
    late = await refused(
        api.ops.ApproveKycAttestation,
        pb.ApproveKycAttestationRequest(attestation_id=proposal.attestation_id),
        amos,
    )
    assert reason_of(late) == "KYC_ATTESTATION_REFUSED"
    assert (await kyc_of(api, first)).first_name == "Daniel"
    assert [r.action for r in await audit_rows(api, first)][-1] == "kyc.attestation_refused"
    assert not (
        await api.ops.ListKycAttestations(pb.ListKycAttestationsRequest(), metadata=amos)
    ).attestations

    second = await rest_user(api, "eve_w")
    proposal = (
        await api.ops.ProposeKycAttestation(
            pb.ProposeKycAttestationRequest(user_id=second, identity=IDENTITY, evidence="TICKET-9"),
            metadata=olga,
        )
    ).attestation
    reject = pb.RejectKycAttestationRequest(attestation_id=proposal.attestation_id, reason="photo unreadable")
    own = await refused(
        api.ops.RejectKycAttestation, reject, staff(api, "olga", OPERATOR_ROLE, APPROVER_ROLE)
    )
    assert reason_of(own) == "FOUR_EYES_REQUIRED"
    rejected = (await api.ops.RejectKycAttestation(reject, metadata=amos)).attestation
    assert (rejected.status, rejected.outcome) == ("REJECTED", "photo unreadable")
    assert await kyc_of(api, second) is None
    async with api.core.engine.connect() as connection:
        status = (
            await connection.execute(
                select(user_compliance.c.kyc_status).where(
                    user_compliance.c.user_id == UserId.from_str(second).value
                )
            )
        ).scalar_one()
    assert status == "NONE"


async def test_two_approvers_at_once_store_the_snapshot_once(api: Harness) -> None:
    """Two approvals of one attestation racing: one executes it, the other is refused, and the
    user gets one snapshot (one KycAttestedByOperator record, one KycSnapshotTaken event)."""
    user_id = await rest_user(api, "fay_m")
    proposal = (
        await api.ops.ProposeKycAttestation(
            pb.ProposeKycAttestationRequest(user_id=user_id, identity=IDENTITY, evidence="TICKET-10"),
            metadata=staff(api, "olga", OPERATOR_ROLE),
        )
    ).attestation
    approve = pb.ApproveKycAttestationRequest(attestation_id=proposal.attestation_id)
    outcomes = await asyncio.gather(
        api.ops.ApproveKycAttestation(approve, metadata=staff(api, "amos", APPROVER_ROLE)),
        api.ops.ApproveKycAttestation(approve, metadata=staff(api, "abel", APPROVER_ROLE)),
        return_exceptions=True,
    )
    executed = [o for o in outcomes if not isinstance(o, BaseException)]
    losers = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(executed) == 1 and executed[0].attestation.status == "EXECUTED"
    assert len(losers) == 1 and reason_of(losers[0]) in ("REVIEW_ACTION_NOT_OPEN", "CONCURRENT_MODIFICATION")
    assert (await kyc_of(api, user_id)).first_name == FIRST
    rows = await audit_rows(api, user_id)
    assert [r.action for r in rows].count("KycAttestedByOperator") == 1
    async with api.core.engine.connect() as connection:
        taken = (
            await connection.execute(
                select(domain_events.c.id).where(
                    domain_events.c.event_type == "KycSnapshotTaken",
                    domain_events.c.aggregate_id == user_id,
                )
            )
        ).all()
    assert len(taken) == 1
