"""The `penpay` command.

Each module in `penpay.commands` adds its own subcommand, so subsystems can be
added without editing this file: it defines `register(subparsers)` and, if it
belongs under a group such as `penpay sim ...`, `GROUP = "sim"`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from penpay import commands
from penpay.logging_setup import setup_logging

GROUPS = {
    "sim": "run a simulator of an external system (Deriv, Daraja, SMS)",
    "worker": "run a background worker",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="penpay", description="PenPay money-movement engine")
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for name, help_text in GROUPS.items():
        group_parser = top.add_parser(name, help=help_text)
        groups[name] = group_parser.add_subparsers(dest=f"{name}_command", required=True, metavar="NAME")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        group = getattr(module, "GROUP", None)
        module.register(groups[group] if group else top)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # One logging set-up for every command (security/logs.py): JSON, secrets redacted.
    setup_logging(getattr(args, "log_level", None), default=getattr(args, "default_log_level", None))
    result = args.handler(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
