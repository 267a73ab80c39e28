"""Every PenPay process on its own, on MariaDB + Redis, with both simulators: for the demo on a
real topology, the end-to-end benchmark and the chaos soak.

    async with Cluster(ClusterConfig(database_url=..., redis_url=..., workdir=tmp)) as cluster:
        cluster.addresses["http"]              # the HTTP bridge, http://127.0.0.1:P
        await cluster.kill("worker-1")          # SIGKILL
        await cluster.restart("gateway")        # start it again, wait until it is ready

Processes (names): deriv-sim, mpesa-sim, gateway (and gateway-standby), callbacks, relay,
worker-1..N (saga consumer + sweeper), notify, audit (auditor + FloatLow alerts), api, http.
Each is `python -m penpay ...` as an operator
would run it, configured only by PENPAY_* environment, with its output in `<workdir>/<name>.log`.
Ports are picked free on loopback at construction and kept across restarts, so a restarted
process is found where its clients expect it. Streams, consumer groups and the gateway lease
live under a prefix of their own, so clusters sharing a Redis do not meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
Probe = Callable[[], Awaitable[bool]]


# Ports for servers we start come from below Linux's ephemeral range (32768-60999 by default). A port
# the kernel hands out for port 0 is in that range, where any outgoing connection (to MariaDB, Redis,
# a simulator) may take it between our check and the server's bind: with tests in several processes
# that race lost a soak its M-Pesa simulator. Below it, only another listener choosing at random can.
_LISTEN_PORTS = range(20_000, 32_768)


def free_port() -> int:
    """A port nothing listens on now, chosen where outgoing connections never take one."""
    for _ in range(64):
        port = _LISTEN_PORTS.start + secrets.randbelow(len(_LISTEN_PORTS))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # a crowded range: let the kernel choose
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def tcp_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def grpc_serving(addr: str, service: str = "") -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(addr) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1.0
            )
        except grpc.aio.AioRpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@dataclass
class ClusterConfig:
    database_url: str
    redis_url: str
    workdir: Path
    seed: int = 0
    workers: int = 2
    relays: int = 1
    standby_gateway: bool = False
    # Saga timings short enough that lost answers are chased within seconds (tests, soak, bench).
    fast_sagas: bool = True
    mpesa_callback_delay: float = 0.0
    deriv_sim_args: Sequence[str] = ()
    mpesa_sim_args: Sequence[str] = ()
    float_usd_cents: int = 50_000_00  # the Deriv simulator agent's opening balance
    float_kes_cents: int = 10_000_000_00
    env: Mapping[str, str] = field(default_factory=dict)  # extra PENPAY_* for every process
    log_level: str = "WARNING"  # of every process (DEBUG: the log-secrets test reads everything)
    # SMS through the Africa's Talking simulator (its mailbox holds the codes); off: the development
    # sink, which the bench's users read through DevService.
    sms_simulator: bool = False
    start_timeout: float = 60.0
    # A command run in front of a process by name (valgrind for bench.e2e_instructions), its
    # arguments before `python -m penpay ...`
    wrap: Mapping[str, Sequence[str]] = field(default_factory=dict)


FAST_SAGA_ENV = {
    "PENPAY_SAGA_CALL_GRACE": "2",
    "PENPAY_SAGA_STK_CALLBACK_WAIT": "3",
    "PENPAY_SAGA_B2C_RESULT_WAIT": "3",
    "PENPAY_SAGA_QUERY_INTERVAL": "1",
    "PENPAY_SWEEPER_INTERVAL": "0.5",
    "PENPAY_SWEEPER_MIN_AGE": "1",
    "PENPAY_SWEEPER_EVENT_GRACE": "3",
    # the simulator's customers pay within seconds of a push (callback delay plus a chaos delay)
    "PENPAY_REVIEW_LOST_PUSH_WAIT": "30",
}


PENPAY = (sys.executable, "-m", "penpay")


class ManagedProcess:
    """One child (`python -m penpay ...`, or any `program`): start, probe until ready, signal, restart."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log: Path,
        ready: Probe | None,
        program: Sequence[str] = PENPAY,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.cwd = cwd
        self.program = list(program)
        self.argv = list(argv)
        self.env = dict(env)
        self.log = log
        self.ready = ready
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def spawn(self) -> None:
        with self.log.open("ab") as out:
            out.write(f"\n=== start {self.starts + 1} of {self.name}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [*self.program, *self.argv],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C meant for the driver does not reach the children
            )
        self.starts += 1

    async def wait_ready(self, timeout: float) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited during start-up:\n{self.tail()}")
            if self.ready is None or await self.ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready after {timeout:.0f} s:\n{self.tail()}")
            await asyncio.sleep(0.1)

    async def start(self, timeout: float) -> None:  # noqa: ASYNC109
        self.spawn()
        await self.wait_ready(timeout)

    def signal(self, signum: int) -> None:
        if self.alive:
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signum)

    async def wait_exit(self, timeout: float) -> bool:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while self.alive:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def kill(self) -> None:
        """SIGKILL: no clean-up, no goodbye; what a crashed host looks like."""
        self.signal(signal.SIGKILL)
        await self.wait_exit(10)

    async def stop(self, grace: float = 10.0) -> None:
        self.signal(signal.SIGTERM)
        if not await self.wait_exit(grace):
            await self.kill()

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


class Cluster:
    """The separate-process topology of docker-compose.yml, on loopback."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.prefix = f"penpay-cluster-{secrets.token_hex(4)}:"
        self.ports = {
            name: free_port()
            for name in (
                "deriv_ws", "deriv_control", "deriv_rest", "mpesa", "callbacks", "gateway",
                "gateway_standby", "grpc", "http", "metrics", "sms",
            )
        }  # fmt: skip
        self.callback_secret = secrets.token_urlsafe(24)
        self.processes: dict[str, ManagedProcess] = {}
        self.workdir = config.workdir
        self.workdir.mkdir(parents=True, exist_ok=True)

    # --- addresses and configuration ------------------------------------------------------------

    @property
    def addresses(self) -> dict[str, str]:
        p = self.ports
        return {
            "http": f"http://127.0.0.1:{p['http']}",
            "grpc": f"127.0.0.1:{p['grpc']}",
            "gateway": self.gateway_addr,
            "deriv_ws": f"ws://127.0.0.1:{p['deriv_ws']}/websockets/v3",
            "deriv_control": f"http://127.0.0.1:{p['deriv_control']}",
            "deriv_rest": f"http://127.0.0.1:{p['deriv_rest']}",
            "mpesa": f"http://127.0.0.1:{p['mpesa']}",
            "callbacks": f"http://127.0.0.1:{p['callbacks']}",
            "sms": f"http://127.0.0.1:{p['sms']}",
        }

    @property
    def gateway_addr(self) -> str:
        leader = f"127.0.0.1:{self.ports['gateway']}"
        if not self.config.standby_gateway:
            return leader
        return f"{leader},127.0.0.1:{self.ports['gateway_standby']}"

    @property
    def env(self) -> dict[str, str]:
        """What every PenPay process is configured with (PENPAY_* only, plus the parent's PATH etc.)."""
        from deriv_gateway.simulator import DEFAULT_AGENT_TOKEN
        from mpesa_adapter.simulator.config import (
            DEFAULT_INITIATOR_PASSWORD,
            SANDBOX_PASSKEY,
            SANDBOX_SHORTCODE,
        )
        from penpay.embedded import DERIV_REST_SIM_AGENT_TOKEN, DERIV_REST_SIM_APP_ID, OAUTH_CALLBACK_PATH
        from sms_adapter.simulator import DEFAULT_API_KEY, DEFAULT_USERNAME

        inherited = {k: v for k, v in os.environ.items() if not k.startswith("PENPAY_")}
        env = {
            **inherited,
            "PENPAY_APP_ENV": "development",  # the DevService sinks and simulators' credentials
            "PENPAY_DATABASE_URL": self.config.database_url,
            "PENPAY_REDIS_URL": self.config.redis_url,
            "PENPAY_GRPC_ADDR": self.addresses["grpc"],
            "PENPAY_HTTP_ADDR": f"127.0.0.1:{self.ports['http']}",
            "PENPAY_METRICS_ADDR": f"127.0.0.1:{self.ports['metrics']}",
            "PENPAY_GATEWAY_ADDR": self.gateway_addr,
            "PENPAY_GATEWAY_LEASE_KEY": f"{self.prefix}deriv-gateway:leader",
            "PENPAY_RATE_LIMIT_PREFIX": self.prefix,  # its own per-IP counters on a shared Redis
            "PENPAY_GATEWAY_LEASE_TTL": "3",
            "PENPAY_GATEWAY_LEASE_RETRY": "0.3",
            "PENPAY_GATEWAY_UNKNOWN_SETTLE": "5",
            "PENPAY_DERIV_WS_URL": self.addresses["deriv_ws"],
            "PENPAY_DERIV_AGENT_TOKEN": DEFAULT_AGENT_TOKEN,
            # Deriv's REST API on the v3 simulator's books (new-API users): the gateway's REST
            # transport, and OAuth binding offered by the API (Deriv's redirect to the bridge).
            "PENPAY_DERIV_REST_BASE_URL": self.addresses["deriv_rest"],
            "PENPAY_DERIV_REST_APP_ID": DERIV_REST_SIM_APP_ID,
            "PENPAY_DERIV_REST_AGENT_TOKEN": DERIV_REST_SIM_AGENT_TOKEN,
            "PENPAY_DERIV_REST_OAUTH_URL": self.addresses["deriv_rest"],
            "PENPAY_DERIV_REST_REDIRECT_URI": f"{self.addresses['http']}{OAUTH_CALLBACK_PATH}",
            "PENPAY_MPESA_BASE_URL": self.addresses["mpesa"],
            "PENPAY_MPESA_CONSUMER_KEY": "penpay-cluster",
            "PENPAY_MPESA_CONSUMER_SECRET": "penpay-cluster-secret",
            "PENPAY_MPESA_SHORTCODE": SANDBOX_SHORTCODE,
            "PENPAY_MPESA_PASSKEY": SANDBOX_PASSKEY,
            "PENPAY_MPESA_INITIATOR_PASSWORD": DEFAULT_INITIATOR_PASSWORD,
            "PENPAY_MPESA_CERT_FILE": str(self.workdir / "daraja-sim-cert.pem"),
            "PENPAY_MPESA_CALLBACK_BASE_URL": self.addresses["callbacks"],
            "PENPAY_MPESA_CALLBACK_SECRET": self.callback_secret,
            # The `audit` process's sealer chains every record; the others only commit them.
            "PENPAY_AUDIT_SEALER": "background",
            "PYTHONUNBUFFERED": "1",
        }
        if self.config.sms_simulator:  # codes and payment notices by SMS through the simulator
            env.update(
                {
                    "PENPAY_SMS_AT_BASE_URL": self.addresses["sms"],
                    "PENPAY_SMS_AT_USERNAME": DEFAULT_USERNAME,
                    "PENPAY_SMS_AT_API_KEY": DEFAULT_API_KEY,
                }
            )
        if self.config.fast_sagas:
            env.update(FAST_SAGA_ENV)
        env.update(self.config.env)
        return env

    # --- the processes ----------------------------------------------------------------------------

    def _define(self) -> None:
        c, p, env = self.config, self.ports, self.env
        stream = ["--stream-prefix", self.prefix]
        level = ["--log-level", c.log_level]

        def add(name: str, argv: Sequence[str], ready: Probe | None) -> None:
            program = (*c.wrap.get(name, ()), *PENPAY)
            self.processes[name] = ManagedProcess(
                name, argv, env, self.workdir / f"{name}.log", ready, program
            )

        add(
            "deriv-sim",
            ["sim", "deriv", "--port", str(p["deriv_ws"]), "--control-port", str(p["deriv_control"]),
             "--rest-port", str(p["deriv_rest"]),
             "--seed", str(c.seed), "--log-level", c.log_level, *c.deriv_sim_args],
            lambda: tcp_open(p["deriv_control"]),
        )  # fmt: skip
        add(
            "mpesa-sim",
            ["sim", "mpesa", "--port", str(p["mpesa"]), "--seed", str(c.seed),
             "--consumer-key", env["PENPAY_MPESA_CONSUMER_KEY"],
             "--consumer-secret", env["PENPAY_MPESA_CONSUMER_SECRET"],
             "--key-seed", f"cluster-{c.seed}", "--write-cert", env["PENPAY_MPESA_CERT_FILE"],
             "--callback-delay", str(c.mpesa_callback_delay), "--log-level", c.log_level, *c.mpesa_sim_args],
            self._mpesa_probe,
        )  # fmt: skip
        if c.sms_simulator:
            add(
                "sms-sim",
                ["sim", "sms", "--listen", f"127.0.0.1:{p['sms']}", "--log-level", c.log_level],
                lambda: tcp_open(p["sms"]),
            )
        gateway_ready = self._gateway_probe
        add("gateway", ["gateway", "--addr", f"127.0.0.1:{p['gateway']}", "--log-level", c.log_level],
            gateway_ready)  # fmt: skip
        if c.standby_gateway:
            add(
                "gateway-standby",
                ["gateway", "--addr", f"127.0.0.1:{p['gateway_standby']}", "--log-level", c.log_level],
                lambda: tcp_open(p["gateway_standby"]),
            )
        add(
            "callbacks",
            ["callbacks", "--log-level", c.log_level, "--register-urls"],
            lambda: tcp_open(p["callbacks"]),
        )
        for n in range(1, c.relays + 1):
            add(f"relay-{n}" if c.relays > 1 else "relay", ["relay", *stream, *level], None)
        for n in range(1, c.workers + 1):
            add(f"worker-{n}", ["worker", "saga", *stream, "--claim-idle-ms", "3000", *level], None)
        add("notify", ["worker", "notify", *stream, "--claim-idle-ms", "3000", *level], None)
        # The continuous auditor and the FloatLow alerts (its verdicts: OpsService.GetAuditorVerdicts).
        add("audit", ["worker", "audit", *stream, "--claim-idle-ms", "3000", *level], None)
        add("api", ["api", "--log-level", c.log_level], lambda: grpc_serving(self.addresses["grpc"]))
        add("http", ["http", "--log-level", c.log_level], lambda: tcp_open(p["http"]))

    async def _mpesa_probe(self) -> bool:
        """Listening, and its certificate written (the B2C SecurityCredential is encrypted to it)."""
        cert = Path(self.env["PENPAY_MPESA_CERT_FILE"])
        written = await asyncio.to_thread(lambda: cert.exists() and cert.stat().st_size > 0)
        return written and await tcp_open(self.ports["mpesa"])

    async def _gateway_probe(self) -> bool:
        return await self.leading_gateway() is not None

    async def leading_gateway(self) -> str | None:
        """The gateway process that holds the lease and is authorized, if any (either, after a failover)."""
        from deriv_gateway.channel import SERVICE_NAME

        names = ("gateway", "gateway-standby") if self.config.standby_gateway else ("gateway",)
        for name in names:
            if await grpc_serving(f"127.0.0.1:{self.ports[name.replace('-', '_')]}", SERVICE_NAME):
                return name
        return None

    async def wait_for_gateway_leader(self, timeout: float) -> str:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while (leader := await self.leading_gateway()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no gateway leads after {timeout:.0f} s")
            await asyncio.sleep(0.1)
        return leader

    async def _run_once(self, *argv: str) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "penpay", *argv, cwd=ROOT, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"penpay {' '.join(argv)} failed:\n{out.decode(errors='replace')}")

    async def start(self) -> None:
        self._define()
        timeout = self.config.start_timeout
        try:
            await self._run_once("migrate")
            await self._fund_floats_once()
            for name in ("deriv-sim", "mpesa-sim"):
                await self.processes[name].start(timeout)
            # The rest in parallel: each only needs the database and the simulators to start.
            rest = [proc for name, proc in self.processes.items() if name not in ("deriv-sim", "mpesa-sim")]
            for proc in rest:
                proc.spawn()
            await asyncio.gather(*(proc.wait_ready(timeout) for proc in rest))
        except BaseException:
            await self.stop()
            raise

    async def _fund_floats_once(self) -> None:
        """A new database: the ledger's floats open at the simulators' balances (audited)."""
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(self.config.database_url)
        try:
            async with engine.connect() as conn:
                funded = (await conn.execute(text("SELECT COUNT(*) FROM ledger_entries"))).scalar_one()
        finally:
            await engine.dispose()
        if funded:
            return
        for kind, currency, cents in (
            ("deriv", "USD", self.config.float_usd_cents),
            ("mpesa", "KES", self.config.float_kes_cents),
        ):
            amount = f"{cents // 100}.{cents % 100:02d}"  # the command takes money as written
            note = "simulator opening balance"
            await self._run_once("float", "fund", kind, currency, amount, "--note", note)

    async def stop(self) -> None:
        """SIGTERM everything, clients before servers; SIGKILL what does not leave in time."""
        order = ["http", "api"] + [n for n in self.processes if n.startswith(("worker", "relay"))]
        order += [
            "notify",
            "audit",
            "callbacks",
            "gateway-standby",
            "gateway",
            "mpesa-sim",
            "deriv-sim",
            "sms-sim",
        ]
        for name in order:
            proc = self.processes.get(name)
            if proc is not None:
                await proc.stop()

    async def __aenter__(self) -> Cluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # --- faults -----------------------------------------------------------------------------------

    async def kill(self, name: str) -> None:
        await self.processes[name].kill()

    async def restart(self, name: str, *, wait: bool = True) -> None:
        proc = self.processes[name]
        if proc.alive:
            await proc.kill()
        proc.spawn()
        if wait:
            await proc.wait_ready(self.config.start_timeout)

    def logs(self) -> dict[str, str]:
        return {name: proc.tail() for name, proc in self.processes.items()}
