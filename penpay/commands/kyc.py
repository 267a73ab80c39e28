"""`penpay kyc attest --break-glass INCIDENT`: one operator records a REST-only user's KYC at once.

The normal path takes two people and goes through the API: an operator proposes the attestation
(OpsService ProposeKycAttestation, the console's KYC page) and a different approver approves it
(application/identity/kyc_review.py). This command is kept only for break-glass, when the API
cannot be reached and a user must be attested now: it needs database access, which is already
more power than four-eyes can bound, so a client of the API here would add nothing the console
and the bridge do not already give. It refuses to run without `--break-glass` naming the incident,
warns on stderr, and its audit record (KycAttestedByOperator) says break_glass, four_eyes false
and the incident, for the review every broken glass gets afterwards.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import cast

from penpay import event_loop


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "kyc", help="KYC for users on Deriv's new API: break-glass attestation (the API takes two people)"
    )
    sub = parser.add_subparsers(dest="kyc_command", required=True, metavar="ACTION")
    attest = sub.add_parser(
        "attest",
        help="BREAK-GLASS: record a REST-only user's KYC alone (normally: propose + approve in the API)",
        description=(
            "Deriv's new API shares no profile, so a user bound only to it has no KYC snapshot and "
            "money does not move for them (KYC_UNAVAILABLE). The normal way is four-eyes through "
            "the API: ProposeKycAttestation by an operator, ApproveKycAttestation by a different "
            "approver (the console's KYC page). This command records the snapshot at once, one "
            "person alone, and is for break-glass only (the API down and a user who cannot wait): "
            "it refuses to run without --break-glass naming the incident. The compliance policy "
            "judges the snapshot as it judges Deriv's. Audited with break_glass and the incident."
        ),
        epilog="example: penpay kyc attest 0193... --first-name Amina --last-name Otieno "
        "--date-of-birth 1990-04-02 --residence ke --evidence TICKET-1234 --operator alice "
        "--break-glass INC-42",
    )
    attest.add_argument("user_id", help="the PenPay user id")
    attest.add_argument("--first-name", required=True, help="as on the identity document")
    attest.add_argument("--last-name", required=True, help="as on the identity document")
    attest.add_argument("--date-of-birth", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
    attest.add_argument("--residence", required=True, help="two-letter country code, e.g. ke")
    attest.add_argument("--citizen", help="two-letter country code")
    attest.add_argument("--evidence", required=True, help="where the documents are (ticket or document id)")
    attest.add_argument("--operator", required=True, help="who checked them (audited)")
    attest.add_argument(
        "--break-glass",
        metavar="INCIDENT",
        help="the incident that makes four-eyes through the API impossible now (required; audited)",
    )
    attest.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    attest.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return event_loop.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from application.identity.kyc_attestation import KycAttestation, attest_kyc
    from application.identity.ports import IdentityUnitOfWork
    from domain.shared.errors import DomainError
    from domain.shared.ids import UserId
    from penpay.bootstrap import bootstrap
    from penpay.settings import get_settings

    incident = (args.break_glass or "").strip()
    if not incident:
        print(
            "penpay kyc attest: KYC attestation takes two people: propose it through the API "
            "(OpsService ProposeKycAttestation, or the console's KYC page) and have a different "
            "approver approve it. This command is break-glass only: run it again with "
            "--break-glass INCIDENT if the API cannot be used and the user cannot wait.",
            file=sys.stderr,
        )
        return 2
    if len(incident) > 64 or len(args.operator) > 48:  # the audit actor is "operator:<name>"
        print("penpay kyc attest: the incident (64) or operator name (48) is too long", file=sys.stderr)
        return 2
    print(
        f"WARNING: break-glass KYC attestation by {args.operator} alone (incident {incident}): "
        "no second person checks it. It is audited as break-glass; have it reviewed afterwards.",
        file=sys.stderr,
    )
    settings = get_settings()
    if args.database_url:
        settings = settings.model_copy(update={"database_url": args.database_url})
    try:
        user_id = UserId.from_str(args.user_id)
    except Exception:
        print(f"penpay kyc attest: not a user id: {args.user_id!r}", file=sys.stderr)
        return 2
    attestation = KycAttestation(
        first_name=args.first_name,
        last_name=args.last_name,
        date_of_birth=args.date_of_birth,
        residence=args.residence,
        citizen=args.citizen,
        evidence=args.evidence,
        attested_by=args.operator,
    )
    core = bootstrap(settings, pool_size=1)
    try:
        snapshot = await attest_kyc(
            lambda: cast(IdentityUnitOfWork, core.unit_of_work(actor=f"operator:{args.operator}")),
            core.clock,
            user_id,
            attestation,
            incident=incident,
        )
    except DomainError as error:
        print(f"penpay kyc attest: {error.message}", file=sys.stderr)
        return 1
    finally:
        await core.close()
    verdict = "acceptable" if snapshot.is_acceptable() else "NOT acceptable"
    print(f"KYC snapshot recorded for {user_id} (residence {snapshot.residence}, {verdict})")
    return 0
