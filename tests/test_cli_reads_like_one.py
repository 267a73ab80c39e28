"""`penpay` reads like one command (issue 16.10): every subcommand and option described in --help,
one flag for listen addresses, --version, a bad setting as one line (exit 2), and `penpay check`
on a database that is not ready pointing at `penpay migrate`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from penpay.cli import build_parser, main
from penpay.settings import get_settings
from tests import databases

LISTENERS = {  # servers: their listen flag and what it used to be called
    ("api",): "--addr",
    ("gateway",): "--addr",
    ("http",): None,
    ("callbacks",): None,
    ("sim", "deriv"): "--port",
    ("sim", "mpesa"): "--port",
}


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str | None]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*path, name), sub, helps.get(name)
                yield from _commands(sub, (*path, name))


def _visible_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS]


@pytest.mark.unit
def test_every_subcommand_and_option_is_described() -> None:
    undescribed = []
    for path, parser, listed_as in _commands(build_parser()):
        if not listed_as or not parser.description:
            undescribed.append(" ".join(path))
        for action in _visible_options(parser):
            if not action.help:
                undescribed.append(f"{' '.join(path)} {action.option_strings[0]}")
    assert undescribed == []


@pytest.mark.unit
def test_every_server_listens_with_one_flag_and_the_old_spelling_still_parses() -> None:
    parser = build_parser()
    commands = {path: sub for path, sub, _ in _commands(parser)}
    for path, old in LISTENERS.items():
        flags = {flag for action in _visible_options(commands[path]) for flag in action.option_strings}
        assert "--listen" in flags and not flags & {"--addr", "--host", "--port", "--bind"}, path
        assert parser.parse_args([*path, "--listen", "127.0.0.1:7001"]).listen == "127.0.0.1:7001"
        if old == "--addr":
            assert parser.parse_args([*path, old, "127.0.0.1:7002"]).listen == "127.0.0.1:7002"
    for path in (("api",), ("relay",), ("worker", "saga")):
        flags = {flag for action in _visible_options(commands[path]) for flag in action.option_strings}
        assert "--metrics-listen" in flags and "--metrics-addr" not in flags, path
        args = parser.parse_args([*path, "--metrics-addr", "127.0.0.1:9102"])
        assert args.metrics_listen == "127.0.0.1:9102"


@pytest.mark.unit
def test_a_listen_address_that_is_not_host_port_is_refused_by_the_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["http", "--listen", "8080"])
    assert refused.value.code == 2
    assert "expected HOST:PORT" in capsys.readouterr().err


@pytest.mark.unit
def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"penpay {version('penpay')}"


@pytest.mark.unit
def test_a_bad_setting_is_one_line_naming_it_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PENPAY_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'never.db'}")
    monkeypatch.setenv("PENPAY_SAGA_MAX_ATTEMPTS", "lots")
    get_settings.cache_clear()
    try:
        assert main(["migrate"]) == 2
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr()
    assert out.err.splitlines() == [
        "penpay: PENPAY_SAGA_MAX_ATTEMPTS: "
        "Input should be a valid integer, unable to parse string as an integer"
    ]
    assert not (tmp_path / "never.db").exists()  # refused before anything was done


def _check(url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PENPAY_")} | {"PENPAY_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "penpay", "check"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.integration
def test_check_on_a_database_that_is_not_there_says_to_migrate_and_creates_nothing(tmp_path: Path) -> None:
    run = _check(f"sqlite+aiosqlite:///{tmp_path / 'penpay.db'}", tmp_path)
    assert run.returncode == 2
    [line] = run.stderr.strip().splitlines()
    assert line.startswith("penpay check: the database does not exist")
    assert line.endswith("run `penpay migrate` first")
    assert not (tmp_path / "penpay.db").exists()


@pytest.mark.integration
async def test_check_tells_a_missing_an_empty_and_a_ready_mariadb_apart() -> None:
    from persistence.migrate import schema_problem

    name, url = databases.create_mysql_database(migrated=False)
    try:
        assert await schema_problem(url) == "the database has no PenPay schema"
        assert (
            await schema_problem(url.rsplit("/", 1)[0] + "/penpay_t_missing") == "the database does not exist"
        )
        await _upgrade(url)
        assert await schema_problem(url) is None
    finally:
        databases.drop_mysql_database(name)


async def _upgrade(url: str) -> None:
    from persistence.migrate import upgrade_async

    await upgrade_async(url)
