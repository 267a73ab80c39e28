"""`penpay chaos`: the seeded chaos soak (proving.chaos).

    penpay chaos --seed 7 --transactions 2000 --duration 900 [--workdir DIR] [--json report.json]
                 [--database-url URL] [--redis-url URL] [--settle-timeout 240] [--print-schedule]

Starts every PenPay process on a private mariadbd and redis-server (or the URLs given, which
are then never restarted), drives the seeded traffic while injecting the seeded faults, lets
the system settle, and prints the verdict. Exit status: 0 when every invariant holds, 1 when
one breaks, 2 when the soak could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from penpay import event_loop


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "chaos",
        help="the seeded chaos soak: traffic and faults, then prove nothing lost or paid twice",
        description=(
            "Drive deposits and withdrawals through every PenPay process while killing processes, "
            "restarting Redis and MariaDB, cutting WebSockets and faking the simulators' failures, "
            "all chosen by --seed; then check the ledger, the simulators' books and the audit chain. "
            "Exit 0 when every invariant holds, 1 when one breaks."
        ),
    )
    parser.add_argument("--seed", type=int, required=True, help="the same seed gives the same schedule")
    parser.add_argument("--transactions", type=int, default=200, help="deposits and withdrawals to start")
    parser.add_argument("--duration", type=float, default=90.0, help="seconds of traffic and faults")
    parser.add_argument(
        "--settle-timeout", type=float, default=240.0, help="seconds to let in-flight work end"
    )
    parser.add_argument(
        "--no-review",
        action="store_true",
        help="leave NEEDS_REVIEW and paybill suspense for a person (default: a scripted operator "
        "works the review queue, assigns suspense payments to the soak user who paid them and "
        "refunds one no soak user paid by M-Pesa Reversal)",
    )
    parser.add_argument("--workdir", type=Path, help="logs, private servers' data (default: a temp dir)")
    parser.add_argument("--database-url", help="use this MariaDB database (not restarted by the soak)")
    parser.add_argument("--redis-url", help="use this Redis (not restarted by the soak)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the report as JSON here")
    parser.add_argument("--print-schedule", action="store_true", help="print the schedule and exit")
    parser.add_argument(
        "--traffic", action="store_true", help="with --print-schedule: list every transaction"
    )
    parser.set_defaults(handler=run)


def _say(line: str) -> None:
    print(f"[chaos] {line}", flush=True)


async def _soak(args: argparse.Namespace, workdir: Path) -> int:
    from proving.chaos.soak import ChaosSoak, SoakConfig

    config = SoakConfig(
        seed=args.seed,
        transactions=args.transactions,
        duration=args.duration,
        workdir=workdir,
        database_url=args.database_url,
        redis_url=args.redis_url,
        settle_timeout=args.settle_timeout,
        review=not args.no_review,
    )
    began = time.monotonic()
    async with ChaosSoak(config, say=_say) as soak:
        for line in soak.schedule.lines():
            _say(line)
        report = await soak.run()
    report.timings["total"] = round(time.monotonic() - began, 1)
    print(report.render(), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=2, default=str))
        _say(f"report written to {args.json}")
    return 0 if report.ok else 1


def run(args: argparse.Namespace) -> int:
    from proving.chaos.schedule import build_schedule

    if args.print_schedule:
        schedule = build_schedule(args.seed, args.transactions, args.duration)
        print("\n".join(schedule.lines(traffic=args.traffic)))
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="penpay-chaos-"))
    _say(f"workdir {workdir} (process logs: <name>.log)")
    try:
        return event_loop.run(_soak(args, workdir))
    except KeyboardInterrupt:
        return 2
    except Exception as error:
        print(f"penpay chaos: could not run: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
