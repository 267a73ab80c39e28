"""`penpay audit verify`: check the audit_logs hash chain; exit 1 when any row was changed,
removed or inserted (each broken row is printed), 0 when the chain holds."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from penpay import event_loop
from penpay.cli_args import command_settings

if TYPE_CHECKING:
    from penpay.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("audit", help="audit log tools")
    actions = parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = actions.add_parser("verify", help="verify the audit log hash chain")
    verify.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    verify.set_defaults(handler=run)


async def _verify(settings: Settings) -> int:
    from penpay.bootstrap import bootstrap
    from persistence.audit import verify_chain

    core = bootstrap(settings, pool_size=1)
    try:
        async with core.engine.connect() as connection:
            report = await verify_chain(connection)
    finally:
        await core.close()
    for problem in report.problems:
        print(f"BROKEN {problem}")
    verdict = "intact" if report.ok else f"BROKEN ({len(report.problems)} problems)"
    print(f"audit chain {verdict}: {report.rows_checked} rows checked")
    return 0 if report.ok else 1


def run(args: argparse.Namespace) -> int:
    return event_loop.run(_verify(command_settings(args)))
