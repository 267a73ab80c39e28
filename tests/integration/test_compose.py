"""docker-compose.yml cannot run here (no Docker engine): check it against the CLI and settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from penpay.cli import build_parser
from penpay.settings import Settings

pytestmark = pytest.mark.unit

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def services() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def penpay_commands() -> list[tuple[str, list[str]]]:
    return [
        (name, s["command"][1:]) for name, s in services().items() if s.get("command", [None])[0] == "penpay"
    ]


@pytest.mark.parametrize(("service", "argv"), penpay_commands())
def test_every_penpay_command_in_compose_parses(service: str, argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert callable(args.handler), service


def test_every_penpay_variable_in_compose_is_a_setting() -> None:
    known = {f"PENPAY_{name.upper()}" for name in Settings.model_fields}
    used = {
        key for s in services().values() for key in (s.get("environment") or {}) if key.startswith("PENPAY_")
    }
    assert used and used <= known, sorted(used - known)


def test_the_gateway_runs_as_exactly_one_replica() -> None:
    assert services()["gateway"]["deploy"]["replicas"] == 1


def test_a_command_the_cli_does_not_know_would_be_caught() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["teleport"])


def test_env_example_lists_every_setting() -> None:
    listed = {
        line.split("=", 1)[0]
        for line in (COMPOSE.parent / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert listed == {f"PENPAY_{name.upper()}" for name in Settings.model_fields}
