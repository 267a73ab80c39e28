"""The `penpay` command.

Each module in `penpay.commands` adds its own subcommand, so subsystems can be
added without editing this file: it defines `register(subparsers)` and, if it
belongs under a group such as `penpay sim ...`, `GROUP = "sim"`.

A setting PenPay cannot start with (a malformed value, or in production a development key, a
sandbox value or a plain-text URL) is one line on stderr naming the variable and what it
expects, and exit status 2: an operator reads the cause, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from penpay import commands
from penpay.logging_setup import setup_logging
from penpay.settings import SettingsError
from persistence.server_check import UnsupportedDatabase
from security.config import MissingSecret

GROUPS = {
    "sim": "run a simulator of an external system (Deriv, Daraja, SMS)",
    "worker": "run a background worker",
}
EXIT_BAD_SETTING = 2


def _version() -> str:
    try:
        return version("penpay")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _describe_subcommands(parser: argparse.ArgumentParser) -> None:
    """A subcommand's own --help starts with the line its parent lists it with, unless it has more."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                line = helps.get(name)
                if not sub.description and line:
                    sub.description = line[:1].upper() + line[1:] + "."
                _describe_subcommands(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="penpay",
        description="PenPay money-movement engine: M-Pesa (Daraja) <-> Deriv (payment agent).",
        epilog="Settings come from PENPAY_* environment variables or .env (see .env.example). "
        "`penpay COMMAND --help` describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"penpay {_version()}")
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for name, help_text in GROUPS.items():
        group_parser = top.add_parser(name, help=help_text)
        groups[name] = group_parser.add_subparsers(dest=f"{name}_command", required=True, metavar="NAME")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        group = getattr(module, "GROUP", None)
        module.register(groups[group] if group else top)
    _describe_subcommands(parser)
    return parser


def _setting_problem(error: BaseException) -> BaseException | None:
    """The SettingsError / MissingSecret / UnsupportedDatabase behind `error`, also from inside an
    exception group."""
    if isinstance(error, SettingsError | MissingSecret | UnsupportedDatabase):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _setting_problem(inner)
            if found is not None:
                return found
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # One logging set-up for every command (security/logs.py): JSON, secrets redacted. Inside the
        # try: it reads PENPAY_LOG_LEVEL, and a bad setting is one line, not a traceback.
        setup_logging(getattr(args, "log_level", None), default=getattr(args, "default_log_level", None))
        result = args.handler(args)
    except BaseException as error:
        problem = _setting_problem(error)
        if problem is None:
            raise
        for line in str(problem).splitlines():
            print(f"penpay: {line}", file=sys.stderr)
        return EXIT_BAD_SETTING
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
