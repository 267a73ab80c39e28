"""`penpay reconcile`: reconcile a window against the providers' own records, list runs, export a run.

    penpay reconcile run --from 2026-03-01T00:00:00Z --to 2026-03-02T00:00:00Z [--json]
    penpay reconcile runs [--limit 20]
    penpay reconcile export RUN_ID [--output FILE]

Exit status of `run`: 0 when the run succeeded with no unexplained difference, 1 when it found some
or failed (a provider read failed: the alert says which), 2 when it could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from penpay import event_loop


def moment(text: str) -> datetime:
    """ISO 8601; a moment without a zone is UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 moment: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("reconcile", help="reconcile with Deriv's and M-Pesa's own records")
    sub = parser.add_subparsers(dest="reconcile_command", required=True, metavar="ACTION")
    run = sub.add_parser(
        "run",
        help="reconcile a window of time (with a progress bar)",
        description="Read Deriv's statement and balance (through the gateway) and M-Pesa's Pull "
        "Transactions, Transaction Status and Account Balance (over Daraja) for the window, match them "
        "with PenPay's evidence and ledger, store the run and its items. Exit 0 when nothing is "
        "unexplained, 1 when something is or the run failed.",
    )
    run.add_argument(
        "--from", dest="start", type=moment, required=True, help="ISO 8601, e.g. 2026-03-01T00:00Z"
    )
    run.add_argument("--to", dest="end", type=moment, required=True, help="ISO 8601 (UTC without a zone)")
    run.add_argument("--json", action="store_true", help="print the run's report as JSON")
    run.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    run.set_defaults(handler=_run)
    runs = sub.add_parser("runs", help="list the latest runs")
    runs.add_argument("--limit", type=int, default=20, help="how many runs, newest first (default 20)")
    runs.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    runs.set_defaults(handler=_runs)
    export = sub.add_parser("export", help="a run's items as CSV")
    export.add_argument("run_id", metavar="RUN_ID")
    export.add_argument("--output", "-o", help="write to this file (default stdout)")
    export.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    export.set_defaults(handler=_export)


if TYPE_CHECKING:
    from penpay.bootstrap import Core


def _core(args: argparse.Namespace) -> Core:
    from penpay.bootstrap import bootstrap
    from penpay.cli_args import command_settings

    return bootstrap(command_settings(args), pool_size=5)


def _run(args: argparse.Namespace) -> int:
    if args.end <= args.start:
        print("penpay reconcile: --to must be after --from", file=sys.stderr)
        return 2
    return event_loop.run(_run_async(args))


async def _run_async(args: argparse.Namespace) -> int:
    from application.reconciliation.ports import SOURCES
    from application.reconciliation.rules import CLASSES, ItemClass
    from penpay.reconcile.export import ProgressBar
    from penpay.reconcile.wiring import reconciliation

    core = _core(args)
    wired = reconciliation(core)
    try:
        bar = ProgressBar(len(SOURCES))
        report = await wired.reconciler.run(
            args.start, args.end, now=core.clock.now(), trigger="cli", progress=bar.step
        )
        unexplained = [
            {"item_key": row.item_key, "item_class": row.item_class, "detail": row.detail}
            for row in await wired.store.items(report.run_id)
            if not CLASSES[ItemClass(row.item_class)].explained
        ]
    finally:
        await wired.close()
        await core.close()
    if args.json:
        print(json.dumps(report.__dict__ | {"unexplained_items": unexplained}, sort_keys=True))
    else:
        print(f"run {report.run_id}: {report.status}, {report.unexplained} unexplained")
        for item_class, count in sorted(report.counts.items()):
            print(f"  {item_class:<24} {count}")
        if report.error:
            print(f"  error: {report.error}")
        for item in unexplained:
            print(f"  {item['item_class']:<24} {item['item_key']}: {item['detail']}")
    return 0 if report.status == "SUCCEEDED" and not report.unexplained else 1


def _runs(args: argparse.Namespace) -> int:
    async def go() -> int:
        from penpay.reconcile.wiring import reconciliation_store

        core = _core(args)
        try:
            for row in await reconciliation_store(core).runs(args.limit):
                print(
                    f"{row.id}  {row.status:<9} {row.window_from.isoformat()} .. {row.window_to.isoformat()}"
                    f"  unexplained={row.unexplained}  {row.counts}"
                )
        finally:
            await core.close()
        return 0

    return event_loop.run(go())


def _export(args: argparse.Namespace) -> int:
    async def go() -> int:
        import uuid

        from penpay.reconcile.export import items_csv
        from penpay.reconcile.wiring import reconciliation_store

        try:
            uuid.UUID(args.run_id)
        except ValueError:
            print(f"penpay reconcile export: not a run id: {args.run_id!r}", file=sys.stderr)
            return 2
        core = _core(args)
        try:
            rows = await reconciliation_store(core).items(args.run_id)
        finally:
            await core.close()
        text = items_csv(rows)
        if args.output:
            from pathlib import Path

            await asyncio.to_thread(Path(args.output).write_text, text, newline="")
        else:
            sys.stdout.write(text)
        return 0

    return event_loop.run(go())
