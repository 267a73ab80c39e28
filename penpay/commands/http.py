"""`penpay http`: the HTTP/JSON bridge (grpc-gateway semantics) in front of the gRPC API.

Routes come from the `google.api.http` rules of the services: by default every
`penpay.<name>.v1.*Service` with http rules in the generated packages (auth, payments, wallet, ops;
missing ones are skipped). Serves /openapi.json and /healthz. Stops on SIGINT / SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio

from penpay import event_loop
from penpay.cli_args import add_listen


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("http", help="run the HTTP/JSON bridge to the gRPC API")
    add_listen(parser, what="serve HTTP here", default="PENPAY_HTTP_ADDR")
    parser.add_argument("--grpc-target", help="gRPC server to forward to (default PENPAY_GRPC_ADDR)")
    parser.add_argument(
        "--service",
        action="append",
        dest="services",
        metavar="NAME",
        help=(
            "fully qualified service to bridge (repeatable; default: every penpay v1 service with rules,"
            " and the dev sinks outside production)"
        ),
    )
    parser.add_argument(
        "--insecure-cookies",
        action="store_true",
        help="session cookies without the Secure attribute (local development over plain http only)",
    )
    # Deprecated: which proxies to believe is PENPAY_TRUSTED_PROXIES, the same for every process.
    parser.add_argument("--trust-forwarded-for", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=30.0, help="default unary deadline in seconds (30)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default PENPAY_LOG_LEVEL, INFO)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from penpay.settings import get_settings
    from penpay.wiring.public_surface import bridged_services, build_bridge
    from penpay_api.http import parse_listen

    settings = get_settings()
    if args.trust_forwarded_for:
        print("--trust-forwarded-for is deprecated and ignored: PENPAY_TRUSTED_PROXIES says whom to believe")
    listen = args.listen or settings.http_addr
    target = args.grpc_target or settings.grpc_addr
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        print(exc)
        return 2
    discovered = bridged_services(settings)  # also imports the generated modules --service may name
    services = args.services or discovered
    if not services:
        print("no service with google.api.http rules found (run scripts/gen_protos.py?)")
        return 2
    try:
        app = build_bridge(
            settings,
            services=services,
            grpc_target=target,
            secure_cookies=not args.insecure_cookies,
            default_timeout=args.timeout if args.timeout > 0 else None,
        )
    except ValueError as exc:  # RuleError / TemplateError: an unknown service or a bad http rule
        print(f"cannot bridge: {exc}")
        return 2
    event_loop.run(_serve(app, host, port, target, services))
    return 0


async def _serve(app: object, host: str, port: int, target: str, services: list[str]) -> None:
    from penpay_api.http import start_server
    from workers.host import stop_on_signals

    stop = asyncio.Event()
    stop_on_signals(stop)
    runner, bound = await start_server(app, host, port)  # type: ignore[arg-type]
    print(
        f"penpay http listening on {host}:{bound}, forwarding to {target}: {', '.join(services)}", flush=True
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
