"""`penpay check`: prove the database consistent after a run (persistence.consistency).

    penpay check [--database-url URL] [--stale-after 15m] [--json]
                 [--deriv-control http://127.0.0.1:8768] [--mpesa-control http://127.0.0.1:8766]
                 [--deriv-opening-balance-cents N] [--deriv-agent-loginid CR90000000]

Exit status: 0 when consistent (no violation, no unresolved transaction), 1 when not,
2 when the check could not run (bad arguments, a simulator's books unreachable).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from penpay import event_loop

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 60}


def duration(text: str) -> timedelta:
    """'15' or '15m' (minutes), '90s', '2h', '1d'."""
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 15m, 90s, 2h)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check the ledger, transactions and evidence (and the simulators' books) for consistency",
        description=(
            "Check that every currency's ledger sums to zero, balances match their entries, each "
            "transaction's evidence and postings fit its status, and (given the control URLs) that the "
            "Deriv and M-Pesa simulators executed exactly what the ledger booked. Exit 0 when consistent, "
            "1 when not."
        ),
    )
    parser.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    parser.add_argument(
        "--stale-after",
        type=duration,
        default=timedelta(minutes=15),
        help="a non-terminal transaction older than this is unresolved (default 15m; 90s, 2h, ...)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--deriv-control", metavar="URL", help="the Deriv simulator's control API")
    parser.add_argument(
        "--mpesa-control", metavar="URL", help="the M-Pesa simulator's URL (or its /__control__ URL)"
    )
    parser.add_argument(
        "--deriv-opening-balance-cents",
        type=int,
        help="the agent's Deriv balance before the run (default: read from the simulator's seed)",
    )
    parser.add_argument("--deriv-agent-loginid", help="the payment agent (default: the simulator's only one)")
    parser.add_argument(
        "--deriv-reference-prefix",
        default="PenPay",
        help="the prefix of PenPay's Deriv descriptions (the gateway's reference_prefix)",
    )
    parser.add_argument(
        "--max-rows", type=int, default=1000, help="list at most this many offending rows per rule"
    )
    parser.set_defaults(handler=run)


async def _check(args: argparse.Namespace, url: str) -> Any:
    from penpay.wiring.check import check_database
    from proving.simulator_books import fetch_simulator_books

    books = await fetch_simulator_books(
        deriv_control_url=args.deriv_control,
        mpesa_control_url=args.mpesa_control,
        deriv_agent_loginid=args.deriv_agent_loginid,
        deriv_opening_balance_cents=args.deriv_opening_balance_cents,
        reference_prefix=args.deriv_reference_prefix,
    )
    return await check_database(
        url, now=datetime.now(UTC), stale_after=args.stale_after, books=books, max_rows=args.max_rows
    )


def _cents(value: int) -> str:
    sign = "-" if value < 0 else ""
    whole, part = divmod(abs(value), 100)
    return f"{sign}{whole:,}.{part:02d}"


def render(report: Any, database: str) -> str:
    lines = [f"PenPay consistency check of {database} at {report.checked_at.isoformat(timespec='seconds')}"]
    lines.append("")
    lines.append("Transactions by status:")
    if not report.counts_by_type:
        lines.append("  (none)")
    for type_, counts in sorted(report.counts_by_type.items()):
        listed = ", ".join(f"{status} {count}" for status, count in sorted(counts.items()))
        lines.append(f"  {type_}: {listed}")
    lines.append("Ledger totals (debits / credits):")
    if not report.sums_by_currency:
        lines.append("  (no entries)")
    for currency, sums in sorted(report.sums_by_currency.items()):
        mark = "balanced" if sums["debit_cents"] == sums["credit_cents"] else "UNBALANCED"
        lines.append(f"  {currency}: {_cents(sums['debit_cents'])} / {_cents(sums['credit_cents'])}  {mark}")
    if report.balances_by_kind:
        lines.append("Balances by account kind:")
        for key, total in sorted(report.balances_by_kind.items()):
            lines.append(f"  {key}: {_cents(total)}")
    for comparison in report.floats:
        lines.append(
            f"{comparison.name} float ({comparison.currency}): ledger moved "
            f"{_cents(comparison.ledger_movement_cents)} for transactions; "
            f"simulator {_cents(comparison.simulator_opening_cents)} -> "
            f"{_cents(comparison.simulator_balance_cents)} ({_cents(comparison.simulator_change_cents)}); "
            f"in flight {_cents(comparison.in_flight_difference_cents)}; "
            f"unexplained {_cents(comparison.unexplained_cents)}"
        )
    if report.books_checked:
        lines.append(f"Simulator books compared: {', '.join(report.books_checked)}")

    def section(title: str, items: list[Any]) -> None:
        lines.append("")
        lines.append(f"{title} ({len(items)}):")
        if not items:
            lines.append("  none")
        for item in items:
            about = f" [transaction {item.transaction_id}]" if item.transaction_id else ""
            lines.append(f"  {item.code}: {item.message}{about}")

    section("VIOLATIONS", report.violations)
    section("Warnings", report.warnings)
    lines.append("")
    lines.append(f"Needs review ({len(report.needs_review)}):")
    if not report.needs_review:
        lines.append("  none")
    for item in report.needs_review:
        lines.append(f"  {item.transaction_id}: {item.reason or '(no reason recorded)'}")
    stale = int(report.stale_after.total_seconds())
    lines.append("")
    lines.append(f"Unresolved, non-terminal for more than {stale}s ({len(report.unresolved)}):")
    if not report.unresolved:
        lines.append("  none")
    for item in report.unresolved:
        lines.append(
            f"  {item.transaction_id}: {item.type} {item.status} "
            f"since {item.created_at.isoformat(timespec='seconds')}"
            + (f" ({item.failure_reason})" if item.failure_reason else "")
        )
    lines.append("")
    if report.ok:
        lines.append("RESULT: consistent")
    else:
        lines.append(
            f"RESULT: INCONSISTENT ({len(report.violations)} violations, {len(report.unresolved)} unresolved)"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from penpay.settings import get_settings
    from penpay.wiring.check import schema_problem
    from persistence.urls import redact
    from proving.simulator_books import BooksUnavailable

    url = args.database_url or get_settings().database_url
    problem = event_loop.run(schema_problem(url))
    if problem:
        print(f"penpay check: {problem} ({redact(url)}): run `penpay migrate` first", file=sys.stderr)
        return 2
    try:
        report = event_loop.run(_check(args, url))
    except BooksUnavailable as error:
        print(f"penpay check: cannot read the simulators' books: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"database": redact(url), **report.to_dict()}, indent=2, sort_keys=False))
    else:
        print(render(report, redact(url)))
    return 0 if report.ok else 1
