"""The whole stack in one process on embedded defaults: what `penpay up` runs.

SQLite file, in-process bus, the Deriv, Daraja and SMS (Africa's Talking) simulators, the Deriv
gateway, the M-Pesa callback endpoints, the outbox relay, the saga consumer and sweeper, the
notifications and FloatLow consumers, the continuous auditor, the gRPC API and the HTTP bridge.
Each part is the same object the separate processes run (`penpay gateway`, `penpay api`, ...),
started here side by side on loopback. Settings still come from PENPAY_* (so ports can move); where
a credential is unset, the simulators' public sandbox values are used.
"""

from __future__ import annotations

import asyncio
import secrets
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog
from pydantic import SecretStr

from penpay.settings import Settings

log = structlog.get_logger("penpay.up")

DEFAULT_SMS_SIMULATOR_URL = "http://127.0.0.1:8769"
SMS_SIMULATOR = "SMS simulator (Africa's Talking)"
# Deriv's REST API simulator (new-API accounts), beside the v3 one on its books: `penpay sim deriv
# --rest-port 8770` in the separate-process layout.
DEFAULT_DERIV_REST_SIMULATOR_URL = "http://127.0.0.1:8770"
DERIV_REST_SIMULATOR = "Deriv REST simulator"
DERIV_REST_SIM_APP_ID = "app-sim-1"
DERIV_REST_SIM_AGENT_TOKEN = "sim-rest-agent-pat"  # the v3 agent's account (CR90000000) on the new API
OAUTH_CALLBACK_PATH = "/v1/deriv_account/oauth/callback"


def deriv_rest_simulator_url(settings: Settings) -> str | None:
    """Where the embedded REST simulator listens: the loopback URL PENPAY_DERIV_REST_BASE_URL names,
    the default when it is unset; None when it names a real API (no simulator then)."""
    if not settings.deriv_rest_base_url:
        return DEFAULT_DERIV_REST_SIMULATOR_URL
    url = urlsplit(settings.deriv_rest_base_url)
    if url.scheme == "http" and url.hostname == "127.0.0.1" and url.port:
        return settings.deriv_rest_base_url
    return None


def _port(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host or "127.0.0.1", int(port)


def sms_simulator_url(settings: Settings) -> str:
    """Where the embedded stack runs the SMS simulator: PENPAY_SMS_AT_BASE_URL when it names a
    loopback http port (the demo's own stack picks a free one), else the default."""
    url = urlsplit(settings.sms_at_base_url)
    if url.scheme == "http" and url.hostname == "127.0.0.1" and url.port:
        return settings.sms_at_base_url
    return DEFAULT_SMS_SIMULATOR_URL


def embedded_settings(settings: Settings, state_dir: Path) -> Settings:
    """Fill what the simulators need and the user did not set."""
    from deriv_gateway.simulator import DEFAULT_AGENT_TOKEN
    from mpesa_adapter.simulator.config import (
        DEFAULT_INITIATOR_PASSWORD,
        SANDBOX_PASSKEY,
        SANDBOX_SHORTCODE,
    )

    # The stack runs the audit worker, whose sealer chains every record: no other part seals.
    updates: dict[str, Any] = {"redis_url": None, "audit_sealer": "background"}
    if not settings.deriv_agent_token.get_secret_value():
        updates["deriv_agent_token"] = SecretStr(DEFAULT_AGENT_TOKEN)
    if not settings.mpesa_consumer_key.get_secret_value():
        updates["mpesa_consumer_key"] = SecretStr("penpay-embedded")
        updates["mpesa_consumer_secret"] = SecretStr("penpay-embedded-secret")
    if not settings.mpesa_passkey.get_secret_value():
        updates["mpesa_passkey"] = SecretStr(SANDBOX_PASSKEY)
        updates["mpesa_shortcode"] = SANDBOX_SHORTCODE
    if not settings.mpesa_initiator_password.get_secret_value():
        updates["mpesa_initiator_password"] = SecretStr(DEFAULT_INITIATOR_PASSWORD)
    if not settings.mpesa_callback_secret.get_secret_value():
        updates["mpesa_callback_secret"] = SecretStr(secrets.token_urlsafe(24))
    if not settings.mpesa_cert_file:
        updates["mpesa_cert_file"] = str(state_dir / "daraja-sim-cert.pem")
    # SMS always goes to the simulator here (its mailbox is where the demo reads phone codes); its
    # port is the loopback one PENPAY_SMS_AT_BASE_URL names, else the default.
    from sms_adapter.simulator import DEFAULT_API_KEY, DEFAULT_USERNAME

    if not settings.sms_at_delivery_report_token.get_secret_value():
        updates["sms_at_delivery_report_token"] = SecretStr(secrets.token_urlsafe(24))
    updates["sms_at_username"] = DEFAULT_USERNAME
    updates["sms_at_api_key"] = SecretStr(DEFAULT_API_KEY)
    updates["sms_at_base_url"] = sms_simulator_url(settings)
    rest_sim = deriv_rest_simulator_url(settings)
    if rest_sim is not None:
        # New-API users bind by OAuth on the simulator; Deriv's redirect comes back to the bridge.
        updates["deriv_rest_base_url"] = rest_sim
        updates["deriv_rest_oauth_url"] = rest_sim
        updates["deriv_rest_app_id"] = settings.deriv_rest_app_id or DERIV_REST_SIM_APP_ID
        if not settings.deriv_rest_agent_token.get_secret_value():
            updates["deriv_rest_agent_token"] = SecretStr(DERIV_REST_SIM_AGENT_TOKEN)
        if not settings.deriv_rest_redirect_uri:
            updates["deriv_rest_redirect_uri"] = f"http://{settings.http_addr}{OAUTH_CALLBACK_PATH}"
    if settings.app_env == "production":
        from penpay.settings import SettingsError

        raise SettingsError("PENPAY_APP_ENV: penpay up runs simulators; expected development or testing")
    return settings.model_copy(update=updates)


@dataclass
class EmbeddedStack:
    settings: Settings
    state_dir: Path
    addresses: dict[str, str] = field(default_factory=dict)
    api: Any = None  # the built gRPC API, once started
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        from deriv_gateway.simulator import DerivSimulator
        from deriv_gateway.simulator import SimulatorConfig as DerivSimConfig
        from mpesa_adapter.simulator import DarajaSimulator
        from mpesa_adapter.simulator import SimulatorConfig as MpesaSimConfig
        from penpay.bootstrap import bootstrap, payments
        from penpay.wiring.auditor import build_audit_worker
        from penpay.wiring.callbacks import build_callback_server, register_paybill_urls
        from penpay.wiring.gateway import build_gateway
        from penpay.wiring.saga_worker import build_saga_worker
        from persistence.migrate import upgrade_async
        from sms_adapter.simulator import SmsSimulator

        s = self.settings
        self.state_dir.mkdir(parents=True, exist_ok=True)
        await upgrade_async(s.database_url)

        # Simulators: Deriv (WebSocket + control API), Daraja (HTTP).
        ws = urlsplit(s.deriv_ws_url)
        deriv_sim = DerivSimulator(
            DerivSimConfig(
                host=ws.hostname or "127.0.0.1", port=ws.port or 8765, control_port=(ws.port or 8765) + 3
            )
        )
        await self._stack.enter_async_context(deriv_sim)
        self.addresses["Deriv simulator"] = deriv_sim.url(app_id=None)
        if deriv_sim.control_url:
            self.addresses["Deriv simulator control"] = deriv_sim.control_url
        rest_url = urlsplit(deriv_rest_simulator_url(s) or "")
        if rest_url.port:
            from deriv_gateway.simulator.rest import DerivRestSimulator, RestServerConfig

            rest_sim = DerivRestSimulator(
                deriv_sim, RestServerConfig(host=rest_url.hostname or "127.0.0.1", port=rest_url.port)
            )
            await rest_sim.start()
            self._stack.push_async_callback(rest_sim.stop)
            self.addresses[DERIV_REST_SIMULATOR] = rest_sim.base_url
        mpesa_url = urlsplit(s.mpesa_base_url)
        mpesa_sim = DarajaSimulator(
            MpesaSimConfig(
                host=mpesa_url.hostname or "127.0.0.1",
                port=mpesa_url.port or 8766,
                seed=secrets.randbelow(10**9),
                consumer_key=s.mpesa_consumer_key.get_secret_value(),
                consumer_secret=s.mpesa_consumer_secret.get_secret_value(),
                callback_delay=1.0,
                # The simulated organisation is the configured one: its paybill (or store and till)
                # collects, its own B2C shortcode pays out, its initiator signs.
                shortcodes={s.mpesa_shortcode: s.mpesa_passkey.get_secret_value()},
                tills={s.mpesa_shortcode: [s.mpesa_till_number]} if s.mpesa_till_number else {},
                b2c_shortcodes=[s.mpesa_b2c_shortcode],
                initiator_name=s.mpesa_initiator_name,
                initiator_password=s.mpesa_initiator_password.get_secret_value(),
            )
        )
        await mpesa_sim.start()
        self._stack.push_async_callback(mpesa_sim.stop)
        assert s.mpesa_cert_file is not None
        await asyncio.to_thread(Path(s.mpesa_cert_file).write_text, mpesa_sim.certificate_pem())
        self.addresses["Daraja simulator"] = str(mpesa_sim.base_url)
        collection = s.mpesa_till_number and f"till {s.mpesa_till_number} of store {s.mpesa_shortcode}"
        self.addresses["M-Pesa collection (STK)"] = collection or f"paybill {s.mpesa_shortcode}"
        self.addresses["M-Pesa disbursement (B2C)"] = f"shortcode {s.mpesa_b2c_shortcode}"

        sms_url = urlsplit(s.sms_at_base_url)
        report_token = s.sms_at_delivery_report_token.get_secret_value()
        sms_sim = SmsSimulator(
            host=sms_url.hostname or "127.0.0.1",
            port=sms_url.port or 8769,
            username=s.sms_at_username,
            api_key=s.sms_at_api_key.get_secret_value(),
            # Its delivery reports go to the callback endpoints below, as Africa's Talking's would.
            delivery_report_url=f"{s.mpesa_callback_base_url.rstrip('/')}/sms/delivery-reports/{report_token}",
        )
        await sms_sim.start()
        self._stack.push_async_callback(sms_sim.stop)
        self.addresses[SMS_SIMULATOR] = sms_sim.base_url

        core = bootstrap(s, pool_size=5)
        self._stack.push_async_callback(core.close)

        callbacks = build_callback_server(core)
        await callbacks.start()
        self._stack.push_async_callback(callbacks.stop)
        self.addresses["M-Pesa callbacks"] = callbacks.base_url
        # C2B Register URL at start-up, as an operator does once, so the simulator knows where to
        # ask about and confirm paybill payments.
        await register_paybill_urls(s)

        # The embedded stack holds no Redis lease: it is the only gateway of its world.
        gateway = build_gateway(s, clock=core.clock, redis_url=None)
        await gateway.start()
        self._stack.push_async_callback(gateway.stop, 1.0)
        await gateway.wait_serving(15)
        self.addresses["Deriv gateway (gRPC)"] = gateway.address

        wired = payments(core)
        self._stack.push_async_callback(wired.close)
        await self._fund_floats_once(core)
        api = await self._start_public_surface(core, wired)

        # The relay, the saga consumer and sweeper, and on the same in-process bus the payment
        # notices (SMS to the simulator, email to the API's development sink) and FloatLow alerts,
        # by consumer groups of their own: the saga never waits on them. Then the auditor.
        saga_worker = build_saga_worker(core, payments=wired, notifier=api.notifier, block_ms=200)
        auditor = build_audit_worker(core)
        for daemon in (saga_worker, auditor):
            self._stack.push_async_callback(daemon.close)
            await daemon.start()
            self._tasks.append(asyncio.create_task(daemon.run(self._stop)))

    async def _start_public_surface(self, core: Any, wired: Any) -> Any:
        """The gRPC API and the HTTP bridge; returns the built API."""
        from penpay.wiring.public_surface import start_public_surface

        addresses, api = await start_public_surface(self._stack, core, wired)
        self.addresses.update(addresses)
        self.api = api  # `penpay up` issues the console's staff tokens with its keys
        return api

    async def _fund_floats_once(self, core: Any) -> None:
        """A new database: the ledger's floats open at the simulators' balances (audited)."""
        from application.payments.floats import fund_new_floats
        from domain.wallet.account_kind import AccountKind
        from domain.wallet.money import Currency, Money

        opening = {
            AccountKind.DERIV_AGENT_FLOAT: Money(50_000_00, Currency.USD),  # the simulator agent's balance
            AccountKind.MPESA_FLOAT: Money(10_000_000_00, Currency.KES),
        }
        async with core.unit_of_work(actor="penpay-up") as uow:
            await fund_new_floats(uow, opening, "simulator opening balance")
            await uow.commit()

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, 5)
            except Exception:  # stopping: report nothing, cancel the rest
                task.cancel()
        await self._stack.aclose()
