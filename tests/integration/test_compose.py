"""docker-compose.yml, run without Docker: every service's command, with the environment compose
would give it (environment, env_file, secrets, volumes, interpolation), started from the installed
wheel as separate processes on loopback, in the order depends_on asks, each judged by its own
healthcheck; then the demo journey against them.

What stands in for the containers: each service name becomes "localhost" (still a name the
clients resolve) and each port moves to a free one (the machine is shared), servers listening on
127.0.0.1; MySQL is the machine's MariaDB (a database of
the test's own); Redis is the compose file's own redis-server command; secrets and named volumes
are files and directories under a temporary directory. The stack is the sandbox: profile
"simulators", PENPAY_APP_ENV=development (the demo reads verification codes from the dev sinks),
prepared by scripts/compose_init.sh --sandbox.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml  # type: ignore[import-untyped]  # no stubs in the locked dev tools

from penpay.cli import build_parser
from penpay.settings import Settings
from proving.cluster import ManagedProcess, free_port
from tests.databases import MYSQL_HOST, MYSQL_PORT, create_mysql_database, drop_mysql_database, mysql_url

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SAFARICOM_CALLBACK_IPS = {
    "196.201.214.200", "196.201.214.206", "196.201.213.114", "196.201.214.207", "196.201.214.208",
    "196.201.213.44", "196.201.212.127", "196.201.212.138", "196.201.212.129", "196.201.212.136",
    "196.201.212.74", "196.201.212.69",
}  # fmt: skip
# Read by security/ from the environment, beside the settings model.
SECURITY_VARIABLES = {"PENPAY_JWT_PRIVATE_KEYS", "PENPAY_PII_KEYS"}
# Not PenPay's: MySQL stands in as MariaDB, Redis runs its own command.
INFRASTRUCTURE = {"mysql"}
PENPAY_SERVICES = {
    "migrate", "gateway", "gateway-standby", "relay", "api", "http", "workers", "callbacks",
}  # fmt: skip

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def interpolate(value: Any, shell: Mapping[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, over strings in lists and mappings."""
    if isinstance(value, str):

        def one(match: re.Match[str]) -> str:
            name, op, arg = match["name"], match["op"], match["arg"]
            current = shell.get(name, "")
            if current:
                return current
            if op == ":?":
                raise ValueError(f"compose would refuse to start: {name}: {arg}")
            return arg if op == ":-" else ""

        return _VARIABLE.sub(one, value)
    if isinstance(value, list):
        return [interpolate(v, shell) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, shell) for k, v in value.items()}
    return value


def read_env_file(path: Path) -> dict[str, str]:
    """Compose's env_file: KEY=VALUE lines, comments and blank lines skipped, values verbatim."""
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value
    return env


def compose_file(shell: Mapping[str, str]) -> dict[str, Any]:
    return dict(interpolate(yaml.safe_load(COMPOSE.read_text()), shell))


def raw_services() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


# --- the file itself ------------------------------------------------------------------------------


def penpay_commands() -> list[tuple[str, list[str]]]:
    services = raw_services().items()
    return [(n, s["command"][1:]) for n, s in services if s.get("command", [None])[0] == "penpay"]


def healthcheck_commands() -> list[tuple[str, list[str]]]:
    return [
        (n, s["healthcheck"]["test"][2:])
        for n, s in raw_services().items()
        if "healthcheck" in s and s["healthcheck"]["test"][1] == "penpay"
    ]


@pytest.mark.unit
@pytest.mark.parametrize(("service", "argv"), penpay_commands() + healthcheck_commands())
def test_every_penpay_command_in_compose_parses(service: str, argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert callable(args.handler), service


@pytest.mark.unit
def test_a_command_the_cli_does_not_know_would_be_caught() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["teleport"])


@pytest.mark.unit
def test_every_penpay_variable_in_compose_and_its_env_files_is_a_setting() -> None:
    known = {f"PENPAY_{name.upper()}" for name in Settings.model_fields} | SECURITY_VARIABLES
    used = {key for s in raw_services().values() for key in (s.get("environment") or {})}
    for example in ("penpay.env.example", "sandbox.env.example"):
        used |= set(read_env_file(ROOT / "deploy" / example))
    used = {key for key in used if key.startswith("PENPAY_")}
    assert used and used <= known, sorted(used - known)


@pytest.mark.unit
def test_every_long_running_service_has_a_healthcheck_and_waits_for_the_migration() -> None:
    services = raw_services()
    for name, service in services.items():
        if service.get("restart") == "no":  # one-offs: migrate, sim-floats
            continue
        assert "healthcheck" in service, name
        if name in PENPAY_SERVICES:
            assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
    assert services["migrate"]["depends_on"]["mysql"]["condition"] == "service_healthy"


@pytest.mark.unit
def test_production_defaults_secrets_and_allow_list() -> None:
    shell = {"PENPAY_ENV_FILE": "x.env"}
    services = compose_file(shell)["services"]
    for name in PENPAY_SERVICES:
        assert services[name]["environment"]["PENPAY_APP_ENV"] == "production", name
        assert services[name]["env_file"] == ["x.env"], name
    api = services["api"]
    assert api["environment"]["PENPAY_JWT_PRIVATE_KEYS"] == "k1:/run/secrets/jwt_signing_key"
    assert "jwt_signing_key" in api["secrets"]
    for sender in ("api", "workers"):  # who sends a B2C encrypts its credential with Daraja's certificate
        assert "daraja_cert" in services[sender]["secrets"], sender
        assert services[sender]["volumes"] == services["workers"]["volumes"], sender
    allowed = services["callbacks"]["environment"]["PENPAY_MPESA_ALLOWED_IPS"]
    assert set(allowed.split(",")) == SAFARICOM_CALLBACK_IPS
    example = read_env_file(ROOT / "deploy" / "penpay.env.example")
    assert example["PENPAY_PII_KEYS"] == "@GENERATED-PII-KEY@"
    mysql = " ".join(services["mysql"]["command"])
    assert "--log-bin-trust-function-creators=1" in mysql
    assert "--transaction-isolation=REPEATABLE-READ" in mysql
    gateways = (services["gateway"]["command"][:2], services["gateway-standby"]["command"][:2])
    assert gateways == (["penpay", "gateway"], ["penpay", "gateway"])


@pytest.mark.unit
def test_env_example_lists_every_setting() -> None:
    listed = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert listed == {f"PENPAY_{name.upper()}" for name in Settings.model_fields}


# --- the stack, as processes on loopback --------------------------------------------------------


@pytest.fixture(scope="module")
def wheel_venv() -> Path:
    """The installed wheel: scripts/test.sh builds it (scripts/wheel_check.sh) and says where."""
    given = os.environ.get("PENPAY_WHEEL_VENV")
    if given:
        return Path(given)
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "wheel_check.sh"), "--install"],
        check=True, stdout=subprocess.PIPE, timeout=600,
    )  # fmt: skip
    return Path(done.stdout.decode().strip().splitlines()[-1])


@dataclass
class Loopback:
    """Compose's world mapped onto this machine."""

    workdir: Path
    database: tuple[str, int]
    hosts: set[str]
    ports: dict[int, int] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)  # container path -> host path

    def port(self, port: int) -> int:
        if port not in self.ports:
            self.ports[port] = free_port()
        return self.ports[port]

    def address(self, host: str, port: int) -> str:
        if host == "mysql":
            return f"{self.database[0]}:{self.database[1]}"
        if host in ("0.0.0.0", "127.0.0.1"):  # where a server listens
            return f"127.0.0.1:{self.port(port)}"
        # A name stays a name (clients must resolve it, as on a compose network): loopback's.
        return f"localhost:{self.port(port)}"

    def text(self, value: str) -> str:
        for inside, outside in sorted(self.paths.items(), key=lambda kv: -len(kv[0])):
            value = value.replace(inside, str(outside))
        names = "|".join(re.escape(h) for h in sorted(self.hosts | {"0.0.0.0", "127.0.0.1", "localhost"}))
        return re.sub(rf"\b({names}):(\d+)\b", lambda m: self.address(m[1], int(m[2])), value)

    def argv(self, argv: list[str]) -> list[str]:
        out: list[str] = []
        for i, arg in enumerate(argv):
            if i > 0 and argv[i - 1] in ("--port", "--control-port", "-p") and arg.isdigit():
                out.append(str(self.port(int(arg))))
            else:
                out.append(self.text(arg))
        return out


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    healthcheck: list[str] | None
    one_off: bool
    depends_on: dict[str, str]
    process: ManagedProcess | None = None


def program(argv: list[str], venv: Path) -> list[str]:
    """`penpay ...` is the wheel's console script; anything else (redis-server, sh) from PATH."""
    first = str(venv / "bin" / "penpay") if argv[0] == "penpay" else shutil.which(argv[0])
    assert first, f"{argv[0]} is not installed"
    return [first, *argv[1:]]


def build_services(
    compose: dict[str, Any], loop: Loopback, venv: Path, profiles: set[str]
) -> dict[str, Service]:
    for name in compose.get("volumes") or {}:
        loop.workdir.joinpath("volumes", name).mkdir(parents=True, exist_ok=True)
    for svc in compose["services"].values():
        for volume in svc.get("volumes") or []:
            name, inside = volume.split(":")[:2]
            loop.paths[inside] = loop.workdir / "volumes" / name
    for name, secret in (compose.get("secrets") or {}).items():
        loop.paths[f"/run/secrets/{name}"] = (ROOT / secret["file"]).resolve()
    base = {"PATH": os.environ["PATH"], "HOME": str(loop.workdir), "PYTHONUNBUFFERED": "1", "LANG": "C.UTF-8"}
    services = {}
    for name, svc in compose["services"].items():
        if name in INFRASTRUCTURE or not set(svc.get("profiles") or []) <= profiles:
            continue
        env = dict(base)
        for env_file in svc.get("env_file") or []:
            env.update(read_env_file((ROOT / env_file).resolve()))
        env.update({k: str(v) for k, v in (svc.get("environment") or {}).items()})
        env = {k: loop.text(v) for k, v in env.items()}
        command = svc["command"]
        if command[:2] == ["sh", "-c"]:
            command = ["sh", "-c", loop.text(command[2])]
            env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"  # `penpay` inside the shell: the wheel's
        test = svc.get("healthcheck", {}).get("test")
        services[name] = Service(
            name=name,
            argv=program(loop.argv(command), venv),
            env=env,
            healthcheck=program(loop.argv(test[1:]), venv) if test else None,
            one_off=svc.get("restart") == "no",
            depends_on={k: v["condition"] for k, v in (svc.get("depends_on") or {}).items()},
        )
    return services


async def healthy(service: Service) -> bool:
    assert service.healthcheck is not None
    process = await asyncio.create_subprocess_exec(
        *service.healthcheck, env=service.env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return await process.wait() == 0


class ComposeOnLoopback:
    def __init__(self, services: dict[str, Service], workdir: Path) -> None:
        self.services = services
        self.workdir = workdir
        self.state: dict[str, str] = {"mysql": "healthy"}  # name -> started / healthy / completed

    def ready_for(self, service: Service) -> bool:
        wanted = {"service_started": {"started", "healthy"}, "service_healthy": {"healthy"},
                  "service_completed_successfully": {"completed"}}  # fmt: skip
        return all(self.state.get(dep) in wanted[cond] for dep, cond in service.depends_on.items())

    async def up(self, timeout: float = 120.0) -> None:
        """Start in depends_on order, as compose does; one-offs must exit 0, the rest turn healthy."""
        deadline = time.monotonic() + timeout
        # sim-floats is run by hand, once (docker compose run --rm sim-floats).
        pending = set(self.services) - {"sim-floats"}
        while pending:
            for name in sorted(pending):
                service = self.services[name]
                if service.process is None and self.ready_for(service):
                    service.process = ManagedProcess(
                        name, service.argv[1:], service.env, self.workdir / f"{name}.log", None,
                        program=service.argv[:1], cwd=self.workdir,
                    )  # fmt: skip
                    service.process.spawn()
                    self.state[name] = "started"
            for name in sorted(pending):
                await self._settle(name, pending)
            if time.monotonic() > deadline:
                raise TimeoutError(f"not up after {timeout:.0f} s: {sorted(pending)}\n{self.tails(pending)}")
            await asyncio.sleep(0.2)

    async def _settle(self, name: str, pending: set[str]) -> None:
        service = self.services[name]
        process = service.process
        if process is None:
            return
        if service.one_off:
            if not process.alive:
                assert process.popen is not None
                if process.popen.returncode != 0:
                    raise RuntimeError(f"{name} exited {process.popen.returncode}:\n{process.tail()}")
                self.state[name] = "completed"
                pending.discard(name)
            return
        if not process.alive:
            raise RuntimeError(f"{name} exited:\n{process.tail()}")
        if service.healthcheck is None or await healthy(service):
            self.state[name] = "healthy"
            pending.discard(name)

    async def run_once(self, name: str, timeout: float = 60.0) -> str:
        service = self.services[name]
        process = await asyncio.create_subprocess_exec(
            *service.argv, env=service.env, cwd=self.workdir,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
        assert process.returncode == 0, out.decode(errors="replace")
        return out.decode(errors="replace")

    def tails(self, names: set[str] | None = None) -> str:
        return "\n".join(
            f"--- {n}\n{s.process.tail(1500)}"
            for n, s in self.services.items()
            if s.process is not None and (names is None or n in names)
        )

    async def down(self) -> None:
        for service in reversed(list(self.services.values())):
            if service.process is not None:
                await service.process.stop()


@pytest.fixture(scope="module")
def compose_inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """scripts/compose_init.sh --sandbox into a directory of the test's; MySQL: a new MariaDB database."""
    deploy = tmp_path_factory.mktemp("deploy")
    subprocess.run(["bash", str(ROOT / "scripts" / "compose_init.sh"), "--sandbox", "--dir", str(deploy)],
                   check=True, capture_output=True)  # fmt: skip
    name, url = create_mysql_database(migrated=False)  # `migrate` is the stack's first step
    # The database compose_init made a password for is the test's: same URL shape, host "mysql".
    env_file = deploy / "penpay.env"
    test_url = mysql_url(name).replace(f"@{MYSQL_HOST}:{MYSQL_PORT}/", "@mysql:3306/")
    lines = [
        f"PENPAY_DATABASE_URL={test_url}" if line.startswith("PENPAY_DATABASE_URL=") else line
        for line in env_file.read_text().splitlines()
    ]
    env_file.write_text("\n".join(lines) + "\n")
    try:
        yield deploy, url
    finally:
        drop_mysql_database(name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    compose_inputs: tuple[Path, str], wheel_venv: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[ComposeOnLoopback, Loopback]]:
    deploy, _ = compose_inputs
    shell = {
        "PENPAY_APP_ENV": "development",
        "PENPAY_ENV_FILE": str(deploy / "penpay.env"),
        "PENPAY_SECRETS_DIR": str(deploy / "secrets"),
        "PENPAY_MPESA_ALLOWED_IPS": "127.0.0.1",
    }
    compose = compose_file(shell)
    workdir = tmp_path_factory.mktemp("compose")
    loop = Loopback(workdir, (MYSQL_HOST, MYSQL_PORT), set(compose["services"]))
    services = build_services(compose, loop, wheel_venv, profiles={"simulators", "sandbox-init"})
    running = ComposeOnLoopback(services, workdir)
    try:
        await running.up()
        await running.run_once("sim-floats")
        yield running, loop
    finally:
        await running.down()


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="module")
async def test_the_demo_journey_runs_on_the_compose_services_from_the_installed_wheel(
    stack: tuple[ComposeOnLoopback, Loopback], wheel_venv: Path
) -> None:
    running, loop = stack
    http, deriv_control, mpesa = loop.ports[8080], loop.ports[8768], loop.ports[8766]
    sms = loop.ports[8769]  # the sim-sms service: phone codes come from its mailbox
    demo = await asyncio.create_subprocess_exec(
        str(wheel_venv / "bin" / "penpay"), "demo", "--no-start", "--timeout", "60",
        "--bridge", f"http://127.0.0.1:{http}", "--deriv-control", f"http://127.0.0.1:{deriv_control}",
        "--mpesa", f"http://127.0.0.1:{mpesa}", "--sms", f"http://127.0.0.1:{sms}",
        env={"PATH": os.environ["PATH"], "HOME": str(running.workdir)}, cwd=running.workdir,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(demo.communicate(), 240)
    text = out.decode(errors="replace")
    assert demo.returncode == 0, f"{text}\n{running.tails()}"
    assert "demo passed" in text


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="module")
async def test_one_gateway_leads_and_the_other_stands_by(stack: tuple[ComposeOnLoopback, Loopback]) -> None:
    from deriv_gateway.channel import SERVICE_NAME
    from proving.cluster import grpc_serving

    _, loop = stack
    leading = [await grpc_serving(f"127.0.0.1:{loop.ports[port]}", SERVICE_NAME) for port in (50052, 50053)]
    assert sorted(leading) == [False, True]


def production_api(tmp: Path, venv: Path, edit_env: dict[str, str | None], jwt_pem: bytes | None) -> Service:
    """The `api` service as compose would start it in production (no shell PENPAY_APP_ENV), with
    scripts/compose_init.sh's production inputs, edited."""
    deploy = tmp / "deploy"
    subprocess.run(["bash", str(ROOT / "scripts" / "compose_init.sh"), "--dir", str(deploy)],
                   check=True, capture_output=True)  # fmt: skip
    env_file = deploy / "penpay.env"
    env = read_env_file(env_file)
    for key, value in edit_env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    if jwt_pem is not None:
        (deploy / "secrets" / "jwt-signing-key.pem").write_bytes(jwt_pem)
    compose = compose_file({"PENPAY_ENV_FILE": str(env_file), "PENPAY_SECRETS_DIR": str(deploy / "secrets")})
    loop = Loopback(tmp, (MYSQL_HOST, MYSQL_PORT), set(compose["services"]))
    return build_services(compose, loop, venv, profiles=set())["api"]


# Email and SMS providers as an operator fills them in: the api starts only with both.
PROVIDERS = {"PENPAY_SMTP_HOST": "smtp.example.invalid", "PENPAY_SMS_AT_USERNAME": "penpay",
             "PENPAY_SMS_AT_API_KEY": "at-key"}  # fmt: skip


@pytest.mark.integration
@pytest.mark.parametrize(
    ("edit_env", "jwt_pem", "named"),
    [
        ({**PROVIDERS, "PENPAY_PII_KEYS": None}, None, "PENPAY_PII_KEYS"),
        ({**PROVIDERS}, b"", "PENPAY_JWT_PRIVATE_KEYS"),
        # The SMS provider's settings left as compose_init.sh writes them (empty): nobody could pay.
        ({"PENPAY_SMTP_HOST": "smtp.example.invalid"}, None, "PENPAY_SMS_AT_USERNAME"),
    ],
    ids=["without-pii-keys", "without-a-jwt-key", "without-an-sms-provider"],
)
def test_the_production_api_refuses_to_start_without_its_keys(
    tmp_path: Path, wheel_venv: Path, edit_env: dict[str, str | None], jwt_pem: bytes | None, named: str
) -> None:
    api = production_api(tmp_path, wheel_venv, edit_env, jwt_pem)
    assert api.env["PENPAY_APP_ENV"] == "production"
    done = subprocess.run(api.argv, env=api.env, cwd=tmp_path, capture_output=True, timeout=120)
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode != 0, output
    assert named.lower() in output.lower(), output


@pytest.mark.integration
@pytest.mark.parametrize("probe", ["--grpc", "--http", "--tcp"])
def test_a_healthcheck_fails_where_nothing_answers(probe: str) -> None:
    from penpay.cli import main

    port = free_port()  # bound and released: nothing listens there
    target = f"http://127.0.0.1:{port}/healthz" if probe == "--http" else f"127.0.0.1:{port}"
    assert main(["healthcheck", probe, target, "--timeout", "2"]) == 1


@pytest.mark.integration
@pytest.mark.asyncio(loop_scope="module")
async def test_every_healthcheck_passes_on_the_running_stack(
    stack: tuple[ComposeOnLoopback, Loopback],
) -> None:
    running, _ = stack
    checked = [s for s in running.services.values() if s.healthcheck is not None and s.process is not None]
    names = {s.name for s in checked}
    assert names >= {"gateway", "gateway-standby", "api", "http", "relay", "workers", "callbacks"}
    for service in checked:
        assert await healthy(service), service.name
