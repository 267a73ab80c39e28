"""`penpay up`: the whole stack in one process on embedded defaults, until Ctrl-C.

SQLite (PENPAY_DATABASE_URL, default ./penpay.db), in-process bus, both simulators, gateway,
M-Pesa callbacks, relay, saga workers, gRPC API and HTTP bridge. Prints the addresses.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from penpay import event_loop


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("up", help="run the whole stack on embedded defaults (simulators)")
    parser.add_argument("--state-dir", default=".penpay", help="where the embedded stack keeps its files")
    parser.add_argument("--for-seconds", type=float, help="stop after this long (smoke runs)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default PENPAY_LOG_LEVEL, WARNING)")
    parser.set_defaults(handler=run, default_log_level="WARNING")


def run(args: argparse.Namespace) -> int:
    from workers.alert_metrics import count_alerts

    count_alerts()  # served with the API's metrics in this one process
    return event_loop.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from penpay.embedded import EmbeddedStack, embedded_settings
    from penpay.settings import get_settings
    from workers.host import stop_on_signals

    state = Path(args.state_dir)
    stack = EmbeddedStack(embedded_settings(get_settings(), state), state)
    stop = asyncio.Event()
    stop_on_signals(stop)
    renewing: asyncio.Task[None] | None = None
    try:
        await stack.start()
        print("PenPay is up (embedded: SQLite, in-process bus, simulators). Ctrl-C stops it.")
        for name, address in stack.addresses.items():
            print(f"  {name:<28} {address}")
        tokens_file = state / "ops-tokens.txt"
        every = _write_staff_tokens(stack.api.tokens, tokens_file, stack.settings.jwt_ttl_seconds)
        renewing = asyncio.create_task(_renew_staff_tokens(stack.api.tokens, tokens_file, every))
        print(f"  {'ops console staff tokens':<28} {tokens_file} (two people: four-eyes)")
        print("ready", flush=True)
        if args.for_seconds:
            await asyncio.wait([asyncio.ensure_future(stop.wait())], timeout=args.for_seconds)
        else:
            await stop.wait()
    finally:
        if renewing is not None:
            renewing.cancel()
        await stack.stop()
    print("stopped")
    return 0


# Development only (`penpay up` is refused in production): its signing key lives as long as the
# process, so `penpay api --issue-operator-token` cannot sign for it; the console's staff tokens
# are written to the state directory instead (owner-only), and renewed before they expire.
STAFF = (("ops-olga", ("viewer", "operator")), ("ops-amos", ("viewer", "approver")))


def _write_staff_tokens(tokens: Any, path: Path, ttl_seconds: int) -> int:
    """Write fresh tokens; returns the seconds until they should be renewed."""
    from domain.shared.clock import SystemClock

    lines = ["# Staff access tokens for the ops console of this `penpay up` (renewed while it runs)."]
    for name, roles in STAFF:
        token, expires = tokens.issue_operator_token(operator=name, now=SystemClock().now(), roles=roles)
        lines += [f"# {name} ({', '.join(roles)}), expires {expires.isoformat()}", token]
    path.touch(mode=0o600)
    path.write_text("\n".join(lines) + "\n")
    return max(30, ttl_seconds // 2)


async def _renew_staff_tokens(tokens: Any, path: Path, every: int) -> None:
    while True:
        await asyncio.sleep(every)
        every = _write_staff_tokens(tokens, path, every * 2)
