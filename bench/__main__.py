"""`python -m bench`: every benchmark in one command, a table on stdout, the figures as JSON.

    .venv/bin/python -m bench                      # every group, a few minutes
    .venv/bin/python -m bench --quick              # short windows, every group but e2e (about a minute)
    .venv/bin/python -m bench --quick --groups ledger,api,gateway,bus,e2e   # quick, with a small e2e
    .venv/bin/python -m bench --groups ledger,api  # some groups
    .venv/bin/python -m bench --output /tmp/run.json

Never part of the tests' pass/fail: a missed goal is printed (and in the JSON), the exit code is 0
unless the run itself broke. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import groups
from bench.machine import facts
from bench.results import Results, print_table, write_json
from bench.scratch import DEFAULT_ADMIN_URL

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--groups",
        help=f"comma-separated, from: {', '.join(groups.ORDER)} (default: all; with --quick all but e2e, "
        "whose cluster alone takes longer than a quick run)",
    )
    parser.add_argument("--quick", action="store_true", help="short windows and small phases: about a minute")
    parser.add_argument("--seconds", type=float, help="measured window per figure (default 5, quick 1.5)")
    parser.add_argument("--warmup", type=float, help="unmeasured warm-up per figure (default 1, quick 0.3)")
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("PENPAY_BENCH_MYSQL_URL", DEFAULT_ADMIN_URL),
        help="MariaDB server (user root or penpay) where the scratch database penpay_bench_<random> "
        "is created and dropped",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("PENPAY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument(
        "--shared-mariadb",
        action="store_true",
        help="e2e on --mysql-url instead of a private mariadbd of its own (then MariaDB's counters "
        "and CPU are server-wide: valid only while nothing else uses that server)",
    )
    parser.add_argument(
        "--deposits",
        type=int,
        help="deposits in the e2e deposit phase (default 200, quick 30): more deposits spread the "
        "idle passes of the sweeper and relay thinner in the per-deposit figures",
    )
    parser.add_argument(
        "--withdrawals",
        type=int,
        help="withdrawals in the e2e withdrawal phase (default 50, quick 10): quick's ten leave the "
        "relay's, the sealer's and the gateway's batches nearly empty, so its per-withdrawal figures "
        "swing by a commit from run to run",
    )
    parser.add_argument(
        "--burst",
        type=int,
        help="deposits in the e2e rate-limit burst (default 100, quick 20; issue 8 asks for 500: "
        "about 3 minutes at Deriv's limit of 180 calls/min)",
    )
    parser.add_argument(
        "--saga-timings",
        choices=("fast", "production"),
        default="fast",
        help="e2e cluster's saga and sweeper timings: the cluster's fast ones (call grace 2 s, sweeper "
        "every 0.5 s) or production's defaults (30 s, every 5 s)",
    )
    parser.add_argument(
        "--pin-seconds",
        type=float,
        default=1.0,
        help="e2e: the M-Pesa simulator's delay from an accepted STK push (or B2C) to its callback, "
        "a payer entering the PIN (default 1; a real one takes several). 0 answers at once, before "
        "the saga has stored the push's answer: most deposits then take the early-callback path "
        "(parked, then adopted), which costs about four statements more and is rare in production",
    )
    parser.add_argument(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="e2e cluster's event loop (PENPAY_EVENT_LOOP of every PenPay process), for A/B runs",
    )
    parser.add_argument(
        "--mysql-driver",
        choices=("aiomysql", "asyncmy"),
        default="asyncmy",
        help="e2e cluster's MariaDB driver (the scheme of PENPAY_DATABASE_URL), for A/B runs",
    )
    parser.add_argument(
        "--statement-cache",
        type=int,
        default=None,
        help="e2e cluster's prepared statements per connection (stmt_cache_size in PENPAY_DATABASE_URL; "
        "0: every statement as text), for A/B runs; default: the engine's own",
    )
    parser.add_argument(
        "--db-socket",
        action="store_true",
        help="e2e cluster on its private mariadbd's Unix socket instead of TCP on loopback, for A/B runs",
    )
    parser.add_argument(
        "--lock-waits",
        action="store_true",
        help="e2e diagnostic: the private mariadbd's innodb_lock_wait_timeout at 0, so every statement "
        "that would wait for a row lock fails at once and its digest is listed; the failures change "
        "the run, so its other figures are not comparable; statements go as text (--statement-cache 0) "
        "unless --statement-cache is given: MariaDB digests no prepared statement",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    args = parser.parse_args(argv)
    default = [g for g in groups.ORDER if not (args.quick and g == "e2e")]
    args.groups = [g.strip() for g in args.groups.split(",") if g.strip()] if args.groups else default
    unknown = [g for g in args.groups if g not in groups.ORDER]
    if unknown:
        parser.error(f"unknown group(s): {', '.join(unknown)}")
    args.seconds = args.seconds or (1.5 if args.quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 1.0)
    return args


async def run(args: argparse.Namespace) -> Results:
    results = Results()
    for name in groups.ORDER:
        if name not in args.groups:
            continue
        print(f"[{name}] ...", flush=True)
        started = time.monotonic()
        try:
            await groups.RUNNERS[name](args, results)
        except Exception as exc:  # one broken group must not hide the others' figures
            results.notes.append(f"group {name} failed: {type(exc).__name__}: {exc}")
            print(f"  group {name} failed: {type(exc).__name__}: {exc}", flush=True)
        print(f"  ({time.monotonic() - started:.0f} s)", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = facts(admin_url=args.mysql_url, redis_url=args.redis_url)
    started = time.monotonic()
    results = asyncio.run(run(args))
    settings: dict[str, Any] = {
        "groups": args.groups,
        "quick": args.quick,
        "burst": args.burst,
        "pin_seconds": args.pin_seconds,
        "event_loop": args.event_loop,
        "mysql_driver": args.mysql_driver,
        "statement_cache": args.statement_cache,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "run_seconds": round(time.monotonic() - started, 1),
        **groups.SETTINGS,
    }
    print_table(results, machine)
    write_json(args.output, results, machine, settings)
    print(f"\nresults written to {args.output} (run took {settings['run_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
