"""`penpay api`: the public gRPC API (Auth, Payments, Wallet, Ops; Dev outside production),
with health per service, server reflection and Prometheus metrics.

Listens on PENPAY_GRPC_ADDR (metrics on PENPAY_METRICS_ADDR); stops cleanly on SIGINT/SIGTERM:
health turns NOT_SERVING, calls in flight get a grace period, then everything closes.

`penpay api --issue-operator-token NAME [--roles viewer,operator,approver]` prints a staff access
token (for OpsService; default role operator) and exits. It needs PENPAY_JWT_PRIVATE_KEYS:
without it every process makes its own key, and a running server would not accept a token signed
by another process's key.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from penpay import event_loop
from penpay.cli_args import add_listen, add_metrics_listen


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("api", help="run the public gRPC API (auth, payments, wallet, ops)")
    add_listen(parser, what="serve gRPC here", default="PENPAY_GRPC_ADDR", aliases=("--addr",))
    add_metrics_listen(parser, default="PENPAY_METRICS_ADDR")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds calls in flight get at shutdown")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default PENPAY_LOG_LEVEL, INFO)")
    parser.add_argument(
        "--issue-operator-token",
        metavar="NAME",
        help="print an operator access token for NAME and exit (needs PENPAY_JWT_PRIVATE_KEYS)",
    )
    parser.add_argument(
        "--roles",
        default="operator",
        help="with --issue-operator-token: comma-separated staff roles, of viewer, operator, approver",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.issue_operator_token:
        return _issue_operator_token(args.issue_operator_token, args.roles)
    from penpay.notifiers import missing_provider
    from penpay.settings import get_settings

    problem = missing_provider(get_settings())
    if problem is not None:  # codes could not be sent: nobody could verify a phone and pay
        print(f"penpay: {problem}", file=sys.stderr)
        return 2
    event_loop.run(_serve(args))
    return 0


def _issue_operator_token(name: str, roles: str = "operator") -> int:
    from domain.shared.clock import SystemClock
    from penpay.bootstrap import access_tokens
    from penpay.settings import get_settings
    from penpay_api.auth import RoleAwareAccessTokens

    settings = get_settings()
    if not settings.jwt_private_keys.get_secret_value().strip():
        print("set PENPAY_JWT_PRIVATE_KEYS (the API server's signing keys) to issue an operator token")
        return 2
    tokens = access_tokens(settings, RoleAwareAccessTokens)
    try:
        token, expires = tokens.issue_operator_token(
            operator=name, now=SystemClock().now(), roles=[r.strip() for r in roles.split(",") if r.strip()]
        )
    except ValueError as exc:
        print(str(exc))
        return 2
    print(token)
    print(f"# expires {expires.isoformat()}", flush=True)
    return 0


async def _serve(args: argparse.Namespace) -> None:
    from penpay import bootstrap
    from penpay.wiring.api import build_api
    from workers.host import stop_on_signals

    core = bootstrap.bootstrap()
    metrics = args.metrics_listen or core.settings.metrics_addr
    api = build_api(core, grpc_addr=args.listen, metrics_addr=metrics)
    stop = asyncio.Event()
    stop_on_signals(stop)
    try:
        await api.serve()
        print(f"penpay api listening on {api.server.address}", flush=True)
        await stop.wait()
        await api.server.stop(grace=args.grace)
    finally:
        await api.close()
        await core.close()
