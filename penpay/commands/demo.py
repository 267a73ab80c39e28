"""`penpay demo`: the scripted journey (proving.demo) against a running stack, or one of its own.

    penpay demo                      # the stack `penpay up` runs, or an embedded one when none answers
    penpay demo --start              # always an embedded stack of its own (temp dir, free ports)
    penpay demo --bridge http://127.0.0.1:8080 --deriv-control http://127.0.0.1:8768 \\
                --mpesa http://127.0.0.1:8766 --no-start

Exit status: 0 when every step went through, 1 when one failed (its message and the bridge's
problem JSON on stderr), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from penpay import event_loop


def cents(text: str) -> int:
    """'2600' or '10.50' -> minor units."""
    try:
        amount = Decimal(text.strip()).scaleb(2)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not an amount: {text!r}") from None
    if not amount.is_finite() or amount <= 0 or amount != amount.to_integral_value():
        raise argparse.ArgumentTypeError(f"not a positive amount with at most cents: {text!r}")
    return int(amount)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="walk a user through deposit and withdrawal over the HTTP bridge (against the simulators)",
        description=(
            "Register, verify phone and email, log in, bind the simulated Deriv account, deposit KES and "
            "watch USD arrive on Deriv, withdraw USD and watch KES arrive at the M-Pesa phone; print each "
            "step, the balances and the ledger. Addresses default to what `penpay up` prints (PENPAY_*)."
        ),
    )
    parser.add_argument(
        "--bridge", metavar="URL", help="the HTTP/JSON bridge (default http://PENPAY_HTTP_ADDR)"
    )
    parser.add_argument(
        "--deriv-control",
        metavar="URL",
        help="the Deriv simulator's control API (default: PENPAY_DERIV_WS_URL's port + 3, as penpay up)",
    )
    parser.add_argument("--mpesa", metavar="URL", help="the Daraja simulator (default PENPAY_MPESA_BASE_URL)")
    parser.add_argument(
        "--sms",
        metavar="URL",
        help="the SMS simulator whose mailbox holds phone codes (default: where `penpay up` runs it)",
    )
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--start",
        action="store_true",
        default=None,
        help="start an embedded stack of its own (temporary SQLite, free ports) even if one answers",
    )
    start.add_argument(
        "--no-start", dest="start", action="store_false", help="fail when no stack answers at --bridge"
    )
    parser.add_argument(
        "--deposit-kes",
        type=cents,
        default=cents("2600"),
        metavar="KES",
        help="KES to deposit, whole shillings (2600: USD 20 at 130 KES/USD; Deriv takes USD 10 to 2000)",
    )
    parser.add_argument(
        "--withdraw-usd", type=cents, default=cents("10"), metavar="USD", help="USD to withdraw (10)"
    )
    parser.add_argument(
        "--deriv",
        choices=("v3", "rest"),
        default="v3",
        help="rest: after binding, move the user to Deriv's new API by OAuth (REST transport) (v3)",
    )
    parser.add_argument(
        "--deriv-rest",
        metavar="URL",
        help="the Deriv REST simulator (default: PENPAY_DERIV_REST_BASE_URL, as penpay up runs it)",
    )
    parser.add_argument(
        "--deriv-token", default=None, help="the Deriv client token to bind (default sim-client1-token)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long any one wait (a transaction to complete, money to show up, a code) may take (60)",
    )
    # the demo's own lines are the output; a failure explains itself
    parser.set_defaults(handler=run, default_log_level="ERROR")


def run(args: argparse.Namespace) -> int:
    return event_loop.run(_run(args))


def _default_endpoints(args: argparse.Namespace, settings: Any) -> Any:
    from penpay.embedded import deriv_rest_simulator_url, sms_simulator_url
    from proving.demo import Endpoints
    from proving.demo.own_stack import DERIV_CONTROL_OFFSET

    ws = urlsplit(settings.deriv_ws_url)
    deriv_control = f"http://{ws.hostname or '127.0.0.1'}:{(ws.port or 8765) + DERIV_CONTROL_OFFSET}"
    return Endpoints(
        bridge_url=args.bridge or f"http://{settings.http_addr}",
        deriv_control_url=args.deriv_control or deriv_control,
        mpesa_url=args.mpesa or settings.mpesa_base_url,
        sms_url=args.sms or sms_simulator_url(settings),
        deriv_rest_url=args.deriv_rest or deriv_rest_simulator_url(settings),
    )


def _timed_printer() -> Callable[[str], None]:
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {line}", flush=True)

    return say


async def _run(args: argparse.Namespace) -> int:
    import tempfile
    from contextlib import AsyncExitStack
    from pathlib import Path

    from penpay.settings import get_settings
    from proving.demo.bridge import bridge_answers
    from proving.demo.own_stack import own_stack

    say = _timed_printer()
    settings = get_settings()
    endpoints = _default_endpoints(args, settings)
    start = args.start
    if start is None:
        start = not await bridge_answers(endpoints.bridge_url)
        if start:
            say(f"no PenPay HTTP bridge answers at {endpoints.bridge_url}: starting an embedded stack")
    elif not start and not await bridge_answers(endpoints.bridge_url):
        print(f"FAILED: no PenPay HTTP bridge answers at {endpoints.bridge_url} (start one with `penpay up`)",
              file=sys.stderr)  # fmt: skip
        return 1
    if not start:
        return await _journey(args, endpoints, say)

    with tempfile.TemporaryDirectory(prefix="penpay-demo-") as state:
        async with AsyncExitStack() as stack:
            try:
                endpoints = await stack.enter_async_context(own_stack(settings, Path(state)))
            except Exception as error:  # its own message says what is wrong (a port taken, production)
                print(f"FAILED: could not start the embedded stack: {error}", file=sys.stderr)
                return 1
            say(f"embedded stack up (SQLite in {state}, in-process bus, simulators)")
            return await _journey(args, endpoints, say, own_stack=True)
    return 1  # not reached: the block returns


async def _journey(
    args: argparse.Namespace, endpoints: Any, say: Callable[[str], None], *, own_stack: bool = False
) -> int:
    from proving.demo import DemoFailed, JourneyOptions, render, run_journey
    from proving.demo.journey import DEFAULT_DERIV_TOKEN

    options = JourneyOptions(
        deposit_kes_cents=args.deposit_kes,
        withdraw_usd_cents=args.withdraw_usd,
        deriv_token=args.deriv_token or DEFAULT_DERIV_TOKEN,
        deriv_api=args.deriv,
        wait_timeout=args.timeout,
    )
    say(
        f"demo against bridge {endpoints.bridge_url}, Deriv simulator control {endpoints.deriv_control_url}, "
        f"Daraja simulator {endpoints.mpesa_url}"
    )
    try:
        result = await run_journey(endpoints, options, say=say)
    except DemoFailed as failure:
        print(failure.explain(), file=sys.stderr, flush=True)
        return 1
    for line in render(result):
        print(line)
    print("\ndemo passed: the deposit and the withdrawal completed")
    console = f"{endpoints.bridge_url.rstrip('/')}/ops/"
    if own_stack:  # stopped when the demo ends
        last = f"ops console: keep a stack with `penpay up` and open its /ops/ (this one was {console})"
    else:
        last = f"ops console: {console} (staff tokens: ops-tokens.txt in `penpay up`'s state directory)"
    print(last, flush=True)
    return 0
