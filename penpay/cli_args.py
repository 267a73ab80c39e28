"""Arguments several `penpay` commands share, so each has one name and one meaning everywhere.

A server's own listen address is `--listen HOST:PORT`, its Prometheus endpoint `--metrics-listen
HOST:PORT`. Older spellings (`--addr`, `--metrics-addr`, a simulator's `--host`/`--port`) still
parse, hidden from --help, so scripts written against them keep working.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from penpay.settings import Settings


def host_port(text: str) -> str:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`); port 0 asks for any free port."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (e.g. 127.0.0.1:8080), got {text!r}")
    return text


def split_host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def add_listen(
    parser: argparse.ArgumentParser, *, what: str, default: str, aliases: Sequence[str] = ()
) -> None:
    """--listen HOST:PORT (dest `listen`), with hidden older spellings."""
    parser.add_argument("--listen", metavar="HOST:PORT", type=host_port, help=f"{what} (default: {default})")
    for alias in aliases:
        parser.add_argument(alias, dest="listen", type=host_port, help=argparse.SUPPRESS)


def add_metrics_listen(parser: argparse.ArgumentParser, *, default: str) -> None:
    """--metrics-listen HOST:PORT (dest `metrics_listen`); --metrics-addr still parses."""
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        type=host_port,
        help=f"serve Prometheus /metrics here (default: {default})",
    )
    parser.add_argument("--metrics-addr", dest="metrics_listen", type=host_port, help=argparse.SUPPRESS)


def add_stream_options(parser: argparse.ArgumentParser, *, consumer: bool = True) -> None:
    """--stream-prefix (dest `stream_prefix`) and, for a consumer, --claim-idle-ms (`claim_idle_ms`)."""
    parser.add_argument("--stream-prefix", default="", help="Redis key prefix of the streams (default none)")
    if consumer:
        parser.add_argument("--claim-idle-ms", type=int, default=60_000, help="XAUTOCLAIM idle threshold")


def add_simulator_listen(parser: argparse.ArgumentParser, *, default_port: int, what: str) -> None:
    """A simulator's --listen HOST:PORT; its older --host / --port still parse (see `listen_of`)."""
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=host_port,
        help=f"{what} (default: 127.0.0.1:{default_port}; port 0: any free port)",
    )
    parser.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=default_port, help=argparse.SUPPRESS)


def listen_of(args: argparse.Namespace) -> tuple[str, int]:
    return split_host_port(args.listen) if args.listen else (args.host, args.port)


def serve_metrics(listen: str | None) -> None:
    """--metrics-listen: Prometheus /metrics of this process on HOST:PORT (nothing when unset)."""
    if listen:
        from prometheus_client import start_http_server

        host, port = split_host_port(listen)
        start_http_server(port, addr=host or "127.0.0.1")


def command_settings(args: argparse.Namespace) -> Settings:
    """The settings, with what the command line overrides (--database-url, --redis-url) applied."""
    from penpay.settings import get_settings

    updates = {name: value for name in ("database_url", "redis_url") if (value := getattr(args, name, None))}
    settings = get_settings()
    return settings.model_copy(update=updates) if updates else settings
