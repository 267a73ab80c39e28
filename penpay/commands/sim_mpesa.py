"""`penpay sim mpesa`: run the Daraja (M-Pesa) simulator until interrupted."""

from __future__ import annotations

import argparse
import json
from typing import Any

from penpay import event_loop
from penpay.cli_args import add_simulator_listen, listen_of

GROUP = "sim"


def _outcomes(text: str) -> dict[str, float]:
    """`0=0.8,1032=0.1,1037=0.1` -> {"0": 0.8, "1032": 0.1, "1037": 0.1}"""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        code, sep, weight = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected CODE=WEIGHT, got {part!r}")
        out[code.strip()] = float(weight)
    return out


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "mpesa",
        help="run a Safaricom Daraja simulator (OAuth, STK Push/Query, B2C, status, balance)",
        description=(
            "A faithful Daraja simulator. Point PENPAY_MPESA_BASE_URL at it, configure the certificate "
            "from GET /__control__/certificate (or --write-cert), and drive outcomes by phone number "
            "or through the /__control__ API. See mpesa_adapter/simulator/README.md."
        ),
    )
    add_simulator_listen(p, default_port=8766, what="serve the Daraja API (and /__control__) here")
    p.add_argument("--seed", default="0", help="seed for ids, receipts and outcome draws (reproducible runs)")
    p.add_argument("--callback-delay", type=float, default=2.0, help="seconds from acceptance to callback")
    p.add_argument("--late-delay", type=float, default=30.0, help="extra seconds for 'late' callbacks")
    p.add_argument("--consumer-key", help="require this consumer key (default: accept any)")
    p.add_argument("--consumer-secret", help="require this consumer secret")
    p.add_argument("--shortcode", default=None, help="Lipa na M-Pesa shortcode (default 174379)")
    p.add_argument("--passkey", default=None, help="passkey of --shortcode (default: the sandbox passkey)")
    p.add_argument(
        "--b2c-shortcode",
        action="append",
        default=None,
        help="the organisation's B2C shortcode (PartyA of B2C, status, balance); repeatable (default 600992)",
    )
    p.add_argument("--initiator-name", default=None, help="B2C/status/balance initiator (default testapi)")
    p.add_argument("--initiator-password", default=None, help="password inside SecurityCredential")
    p.add_argument("--key-seed", default=None, help="derive the certificate's RSA key from this seed")
    p.add_argument("--key-file", default=None, help="use this PEM RSA private key instead")
    p.add_argument("--write-cert", metavar="PATH", help="write the certificate PEM to PATH at start")
    p.add_argument("--stk-outcomes", type=_outcomes, help="weighted STK outcomes, e.g. 0=0.8,1032=0.2")
    p.add_argument("--b2c-outcomes", type=_outcomes, help="weighted B2C outcomes, e.g. 0=0.9,2001=0.1")
    p.add_argument("--no-phone-rules", action="store_true", help="ignore magic phone suffixes")
    p.add_argument("--repeat-rule-seconds", type=float, default=0.0, help="ResultCode 17 window (0: off)")
    p.add_argument("--spike-arrest-rps", type=float, default=None, help="requests/s per API (500.003.02)")
    p.add_argument(
        "--invalid-token-style",
        choices=("uniform", "per_api"),
        default="uniform",
        help="how a bad token is answered: one code for every API, or each API's own (default uniform)",
    )
    p.add_argument("--ban-url-keywords", action="store_true", help="reject URLs containing mpesa/query/...")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default PENPAY_LOG_LEVEL, INFO)")
    p.set_defaults(handler=run)


def build_config(args: argparse.Namespace) -> Any:
    from mpesa_adapter.simulator.config import SANDBOX_PASSKEY, SANDBOX_SHORTCODE, SimulatorConfig

    host, port = listen_of(args)
    config = SimulatorConfig(
        host=host,
        port=port,
        seed=int(args.seed) if str(args.seed).lstrip("-").isdigit() else args.seed,
        callback_delay=args.callback_delay,
        late_delay=args.late_delay,
        consumer_key=args.consumer_key,
        consumer_secret=args.consumer_secret,
        phone_rules=not args.no_phone_rules,
        repeat_rule_seconds=args.repeat_rule_seconds,
        spike_arrest_rps=args.spike_arrest_rps,
        invalid_token_style=args.invalid_token_style,
        ban_url_keywords=args.ban_url_keywords,
        key_file=args.key_file,
    )
    if args.shortcode or args.passkey:
        short = args.shortcode or SANDBOX_SHORTCODE
        config.shortcodes = {short: args.passkey or SANDBOX_PASSKEY}
    if args.b2c_shortcode:
        config.b2c_shortcodes = list(args.b2c_shortcode)
    if args.initiator_name:
        config.initiator_name = args.initiator_name
    if args.initiator_password:
        config.initiator_password = args.initiator_password
    if args.key_seed:
        config.key_seed = args.key_seed
    if args.stk_outcomes:
        config.stk_outcomes = args.stk_outcomes
    if args.b2c_outcomes:
        config.b2c_outcomes = args.b2c_outcomes
    return config


def run(args: argparse.Namespace) -> int:
    return event_loop.run(_serve(build_config(args), args.write_cert))


async def _serve(config: Any, write_cert: str | None) -> int:
    import asyncio
    import contextlib
    import signal
    from pathlib import Path

    from mpesa_adapter.simulator import DarajaSimulator

    sim = DarajaSimulator(config)
    base_url = await sim.start()
    try:
        if write_cert:
            await asyncio.to_thread(Path(write_cert).write_text, sim.certificate_pem())
        print(
            json.dumps(
                {
                    "daraja_simulator": base_url,
                    "control": f"{base_url}/__control__",
                    "certificate": write_cert or f"{base_url}/__control__/certificate",
                    "shortcodes": sorted(config.shortcodes),
                    "b2c_shortcodes": sorted(config.b2c_shortcodes),
                    "initiator": config.initiator_name,
                    "seed": config.seed,
                }
            ),
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await sim.stop()
    return 0
