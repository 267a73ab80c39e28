"""`penpay kyc attest`: PenPay's own KYC for a user on Deriv's new API only (no v3 profile to read).

Support checks the user's identity documents; the operator records what they show. The snapshot is
judged by the compliance policy like one from Deriv; the audit log names the operator and the
evidence reference (application/identity/kyc_attestation.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import date
from typing import cast


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("kyc", help="KYC for users on Deriv's new API (operator attestation)")
    sub = parser.add_subparsers(dest="kyc_command", required=True, metavar="ACTION")
    attest = sub.add_parser(
        "attest",
        help="record the KYC of a REST-only user from documents support checked (audited)",
        description=(
            "Deriv's new API shares no profile, so a user bound only to it has no KYC snapshot and "
            "money does not move for them (KYC_UNAVAILABLE). After support has checked the user's "
            "identity documents, record what they show. The compliance policy judges it as it "
            "judges Deriv's (names, date of birth, residence in Kenya, limits). Audited."
        ),
        epilog="example: penpay kyc attest 0193... --first-name Amina --last-name Otieno "
        "--date-of-birth 1990-04-02 --residence ke --evidence TICKET-1234 --operator alice",
    )
    attest.add_argument("user_id", help="the PenPay user id")
    attest.add_argument("--first-name", required=True, help="as on the identity document")
    attest.add_argument("--last-name", required=True, help="as on the identity document")
    attest.add_argument("--date-of-birth", required=True, type=date.fromisoformat, help="YYYY-MM-DD")
    attest.add_argument("--residence", required=True, help="two-letter country code, e.g. ke")
    attest.add_argument("--citizen", help="two-letter country code")
    attest.add_argument("--evidence", required=True, help="where the documents are (ticket or document id)")
    attest.add_argument("--operator", required=True, help="who checked them (audited)")
    attest.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    attest.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from application.identity.kyc_attestation import KycAttestation, attest_kyc
    from application.identity.ports import IdentityUnitOfWork
    from domain.shared.errors import DomainError
    from domain.shared.ids import UserId
    from penpay.bootstrap import bootstrap
    from penpay.settings import get_settings

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
        )
    except DomainError as error:
        print(f"penpay kyc attest: {error.message}", file=sys.stderr)
        return 1
    finally:
        await core.close()
    verdict = "acceptable" if snapshot.is_acceptable() else "NOT acceptable"
    print(f"KYC snapshot recorded for {user_id} (residence {snapshot.residence}, {verdict})")
    return 0
