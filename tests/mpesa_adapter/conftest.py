"""Fixtures for the Daraja adapter: the simulator, PenPay's callback server, MariaDB; all real sockets."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from application.payments.decisions import SagaPolicy
from domain.shared.clock import Clock
from mpesa_adapter import review_table
from mpesa_adapter.callback_parsing import (
    B2CQueueTimeout,
    B2CResult,
    ResultEnvelope,
    StkCallback,
    TransactionStatusResult,
)
from mpesa_adapter.callback_server import CallbackServer
from mpesa_adapter.callback_store import SENT, SqlCallbackInbox
from mpesa_adapter.client import DarajaClient
from mpesa_adapter.config import CallbackServerConfig, DarajaConfig
from mpesa_adapter.confirmer import CallbackConfirmer
from mpesa_adapter.inbox import Delivery, Outcome, Rejection
from mpesa_adapter.simulator import DarajaSimulator, SimulatorConfig
from mpesa_adapter.simulator.config import DEFAULT_INITIATOR_PASSWORD, SANDBOX_PASSKEY, SANDBOX_SHORTCODE
from mpesa_adapter.simulator.faults import B2C_PHONE_OUTCOMES, STK_PHONE_OUTCOMES
from penpay.bootstrap import evidence_unit_of_work
from persistence.engine import create_engine
from persistence.tables import domain_events, mpesa_disbursements, mpesa_requests, transactions, users
from tests.clocks import SteppingClock

CONSUMER_KEY = "penpay-test-consumer-key"
CONSUMER_SECRET = "penpay-test-consumer-secret-" + "s3cr3t"
B2C_SHORTCODE = "600992"
# Where a harness's clock starts. It steps on every reading, so the reviews still order by arrival.
STARTED_AT = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


@dataclass
class RecordingInbox:
    """Delegates to the SQL inbox and remembers every outcome (what the endpoint decided, per delivery).
    Counts the calls still running, so `Harness.drain` also waits for a delivery the simulator gave up
    waiting for (its callback_timeout) while PenPay was still recording it."""

    inner: SqlCallbackInbox
    outcomes: list[tuple[str, Outcome]] = field(default_factory=list)
    in_flight: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    async def record_stk_callback(self, cb: StkCallback, delivery: Delivery) -> Outcome:
        return await self._track("stk", self.inner.record_stk_callback(cb, delivery))

    async def record_b2c_result(self, cb: B2CResult, delivery: Delivery) -> Outcome:
        return await self._track("b2c_result", self.inner.record_b2c_result(cb, delivery))

    async def record_b2c_timeout(self, cb: B2CQueueTimeout, delivery: Delivery) -> Outcome:
        return await self._track("b2c_timeout", self.inner.record_b2c_timeout(cb, delivery))

    async def record_status_result(self, cb: TransactionStatusResult, delivery: Delivery) -> Outcome:
        return await self._track("status_result", self.inner.record_status_result(cb, delivery))

    async def record_balance_result(self, env: ResultEnvelope, delivery: Delivery) -> Outcome:
        return await self._track("balance_result", self.inner.record_balance_result(env, delivery))

    async def record_rejected(self, rejection: Rejection) -> Outcome:
        return await self._track(f"rejected:{rejection.reason}", self.inner.record_rejected(rejection))

    async def _track(self, kind: str, call: Awaitable[Outcome]) -> Outcome:
        self.in_flight += 1
        self._idle.clear()
        try:
            outcome = await call
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()
        self.outcomes.append((kind, outcome))
        return outcome

    async def idle(self) -> None:
        """Return once no call is running (at once when none is)."""
        if self.in_flight:
            await self._idle.wait()

    def of(self, kind: str) -> list[Outcome]:
        return [o for k, o in self.outcomes if k == kind]


async def make_engine(url: str) -> AsyncEngine:
    return create_engine(url, pool_size=10)


@pytest.fixture
async def db(mariadb_url: str) -> AsyncIterator[AsyncEngine]:
    engine = await make_engine(mariadb_url)
    yield engine
    await engine.dispose()


async def insert_user_row(conn: AsyncConnection, user_id: uuid.UUID, now: datetime) -> None:
    """A bare user row, for transactions the M-Pesa tests write as the saga would."""
    await conn.execute(
        insert(users).values(
            id=user_id,
            email=f"{user_id.hex}@example.test",
            phone=f"+{secrets.randbelow(10**12):012d}",
            password_hash="x",
            email_verified=True,
            status="ACTIVE",
            roles="user",
            version=1,
            created_at=now,
            updated_at=now,
        )
    )


def sim_config(**overrides: Any) -> SimulatorConfig:
    values: dict[str, Any] = {
        "port": 0,
        "seed": secrets.randbelow(10**9),
        "consumer_key": CONSUMER_KEY,
        "consumer_secret": CONSUMER_SECRET,
        "callback_delay": 0.25,
        "late_delay": 0.6,
        "duplicate_gap": 0.01,
        "callback_timeout": 5.0,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


@dataclass
class Harness:
    sim: DarajaSimulator
    engine: AsyncEngine
    server: CallbackServer
    inbox: RecordingInbox
    store: SqlCallbackInbox
    client: DarajaClient
    daraja_config: DarajaConfig
    server_config: CallbackServerConfig
    confirmer: CallbackConfirmer
    session: aiohttp.ClientSession
    clock: Clock  # PenPay's side: the store's stamps and the rows written as the saga would

    @property
    def secret(self) -> str:
        return self.server_config.secret

    def url(self, path: str, secret: str | None = None) -> str:
        return f"{self.server.base_url}{path}/{self.secret if secret is None else secret}"

    def make_client(self, **overrides: Any) -> DarajaClient:
        from dataclasses import replace

        return DarajaClient(replace(self.daraja_config, **overrides), session=self.session)

    async def drain(self) -> None:
        await self.sim.drain(15.0)
        await self.inbox.idle()

    # --- rows the saga would have written ------------------------------------------------

    async def new_transaction(self, phone: str, amount_cents: int, kind: str = "DEPOSIT") -> uuid.UUID:
        now = self.clock.now()
        user_id, tx_id = uuid.uuid4(), uuid.uuid4()
        # A withdrawal as the aggregate holds it: USD asked, the KES paid out its converted amount.
        asked: dict[str, Any] = (
            {"amount_cents": amount_cents, "amount_currency": "KES", "status": "AWAITING_MPESA"}
            if kind == "DEPOSIT"
            else {
                "amount_cents": max(1, amount_cents // 130),
                "amount_currency": "USD",
                "converted_amount_cents": amount_cents,
                "converted_amount_currency": "KES",
                "status": "MPESA_DISBURSEMENT_SENT",
            }
        )
        async with self.engine.begin() as conn:
            await insert_user_row(conn, user_id, now)
            await conn.execute(
                insert(transactions).values(
                    id=tx_id,
                    user_id=user_id,
                    type=kind,
                    **asked,
                    phone=phone,
                    deriv_login_id="CR90000000",
                    idempotency_key_hash=secrets.token_hex(32),
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
        return tx_id

    async def push(self, phone: str, amount_kes: int) -> tuple[uuid.UUID, str]:
        """STK Push as the deposit saga does it: push, then persist the ids. Returns (tx id, checkout id)."""
        tx_id = await self.new_transaction(phone, amount_kes * 100)
        accepted = await self.client.stk_push(
            phone=phone, amount_cents=amount_kes * 100, account_reference="PP1"
        )
        await self.store_request(
            tx_id, accepted.checkout_request_id, accepted.merchant_request_id, phone, amount_kes
        )
        return tx_id, accepted.checkout_request_id

    async def store_request(
        self, tx_id: uuid.UUID, checkout_id: str, merchant_id: str, phone: str, amount_kes: int
    ) -> None:
        now = self.clock.now()
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(mpesa_requests).values(
                    transaction_id=tx_id,
                    checkout_request_id=checkout_id,
                    merchant_request_id=merchant_id,
                    phone=phone,
                    amount_cents=amount_kes * 100,
                    amount_currency="KES",
                    status=SENT,
                    created_at=now,
                    updated_at=now,
                )
            )

    async def payout(
        self, phone: str, amount_kes: int, client: DarajaClient | None = None
    ) -> tuple[uuid.UUID, str]:
        tx_id = await self.new_transaction(phone, amount_kes * 100, kind="WITHDRAWAL")
        ocid = f"PENPAY-{tx_id.hex}"
        await self.store_disbursement(tx_id, ocid, phone, amount_kes)
        accepted = await (client or self.client).b2c_payment(
            originator_conversation_id=ocid, phone=phone, amount_cents=amount_kes * 100
        )
        assert accepted.originator_conversation_id == ocid
        return tx_id, ocid

    async def store_disbursement(self, tx_id: uuid.UUID, ocid: str, phone: str, amount_kes: int) -> None:
        now = self.clock.now()
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(mpesa_disbursements).values(
                    transaction_id=tx_id,
                    originator_conversation_id=ocid,
                    phone=phone,
                    amount_cents=amount_kes * 100,
                    amount_currency="KES",
                    status=SENT,
                    created_at=now,
                    updated_at=now,
                )
            )

    # --- reads ----------------------------------------------------------------------------

    async def request_row(self, checkout_id: str) -> Any:
        async with self.engine.connect() as conn:
            return (
                await conn.execute(
                    select(mpesa_requests).where(mpesa_requests.c.checkout_request_id == checkout_id)
                )
            ).one()

    async def disbursement_row(self, ocid: str) -> Any:
        async with self.engine.connect() as conn:
            return (
                await conn.execute(
                    select(mpesa_disbursements).where(
                        mpesa_disbursements.c.originator_conversation_id == ocid
                    )
                )
            ).one()

    async def reviews(self, correlation_id: str | None = None) -> list[Any]:
        t = review_table.mpesa_callback_reviews
        query = select(t).order_by(t.c.received_at)
        if correlation_id is not None:
            query = query.where(t.c.correlation_id == correlation_id)
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def events(self, tx_id: uuid.UUID) -> list[Any]:
        async with self.engine.connect() as conn:
            return list(
                (
                    await conn.execute(
                        select(domain_events).where(domain_events.c.aggregate_id == str(tx_id))
                    )
                ).all()
            )

    async def count(self, table: Any, *where: Any) -> int:
        async with self.engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
            )

    def callbacks(self, ref: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.sim.callbacks if c["ref"] == ref and (kind is None or c["kind"] == kind)]

    async def post_raw(
        self,
        path: str,
        body: bytes | Any,
        *,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with self.session.post(
            self.url(path, secret), data=data, headers={"Content-Type": "application/json", **(headers or {})}
        ) as resp:
            return resp.status, await resp.json(content_type=None)


async def build_harness(
    engine: AsyncEngine,
    *,
    sim_overrides: dict[str, Any] | None = None,
    server_overrides: dict[str, Any] | None = None,
    client_overrides: dict[str, Any] | None = None,
) -> AsyncGenerator[Harness, None]:
    sim = DarajaSimulator(sim_config(**(sim_overrides or {})))
    await sim.start()
    clock = SteppingClock(STARTED_AT)
    store = inbox_on(engine, clock)
    inbox = RecordingInbox(store)
    server_config = CallbackServerConfig.from_strings(
        secrets.token_urlsafe(24), **({"allowed_ips": "127.0.0.1"} | (server_overrides or {}))
    )
    server = CallbackServer(server_config, inbox, port=0, clock=clock)
    await server.start()
    assert sim.base_url is not None
    settings: dict[str, Any] = {
        "base_url": sim.base_url,
        "consumer_key": CONSUMER_KEY,
        "consumer_secret": CONSUMER_SECRET,
        "shortcode": SANDBOX_SHORTCODE,
        "passkey": SANDBOX_PASSKEY,
        "initiator_name": "testapi",
        "initiator_password": DEFAULT_INITIATOR_PASSWORD,
        "cert_pem": sim.certificate_pem().encode(),
        "callback_base_url": server.base_url,
        "callback_secret": server_config.secret,
        "b2c_shortcode": B2C_SHORTCODE,
        "request_timeout": 2.0,
        "connect_timeout": 1.0,
        "retry_initial_wait": 0.01,
        "retry_max_wait": 0.05,
    }
    daraja_config = DarajaConfig(**(settings | (client_overrides or {})))
    session = aiohttp.ClientSession()
    client = DarajaClient(daraja_config, session=session)
    harness = Harness(
        sim,
        engine,
        server,
        inbox,
        store,
        client,
        daraja_config,
        server_config,
        CallbackConfirmer(client, store),
        session,
        clock,
    )
    try:
        yield harness
    finally:
        await session.close()
        await server.stop()
        await sim.stop()


@pytest.fixture
async def h(db: AsyncEngine, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    marker = request.node.get_closest_marker("harness")
    kwargs = dict(marker.kwargs) if marker else {}
    async for harness in build_harness(db, **kwargs):
        yield harness


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "harness(sim_overrides=..., server_overrides=..., client_overrides=...)"
    )


def inbox_on(engine: AsyncEngine, clock: Clock) -> SqlCallbackInbox:
    """The callback store as the composition root builds it, on this engine and the given clock."""
    return SqlCallbackInbox(engine, evidence_unit_of_work(engine, clock), saga_policy=SagaPolicy())


def phone(suffix: str = "") -> str:
    """A fresh MSISDN (a push locks its subscriber); `suffix` sets the last digits (outcome rules)."""
    body = f"2547{secrets.randbelow(10**8):08d}"
    if body[3:7] in ("7000", "1000"):  # the simulator's fault "lab" range
        body = "2547" + "9" + body[5:]
    if not suffix and body[-4:] in {**STK_PHONE_OUTCOMES, **B2C_PHONE_OUTCOMES}:
        # a random number ending like an outcome rule (1 in about 700) would fail its payment
        body = body[:-4] + "9" + body[-3:]
    return body[: 12 - len(suffix)] + suffix


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


class DelayingProxy:
    """A TCP-level stand-in for a slow network: forwards to the simulator, holding answers for `delay`
    seconds on the paths given. Used to time out a money-moving POST after the simulator accepted it."""

    def __init__(self, upstream: str, delay: float, paths: tuple[str, ...]) -> None:
        self.upstream = upstream
        self.delay = delay
        self.paths = paths
        self.forwarded: list[str] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.forwarded.append(request.path)
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, self.upstream + request.path_qs, data=body, headers=headers
            ) as resp,
        ):
            payload = await resp.read()
            status, ctype = resp.status, resp.content_type
        if request.path in self.paths:
            await asyncio.sleep(self.delay)
        return web.Response(body=payload, status=status, content_type=ctype)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


NOT_FOUND_PAGE = b"<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>"


class WrongProxy:
    """Between PenPay and the simulator: while `broken`, the given paths answer an nginx-style HTML 404
    (a wrong base URL or proxy rule); everything else is forwarded."""

    def __init__(self, paths: tuple[str, ...]) -> None:
        self.paths = paths
        self.broken = True
        self.upstream = ""
        self.refused: list[str] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.broken and request.path in self.paths:
            self.refused.append(request.path)
            return web.Response(status=404, body=NOT_FOUND_PAGE, content_type="text/html")
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, self.upstream + request.path_qs, data=await request.read(), headers=headers
            ) as resp,
        ):
            return web.Response(body=await resp.read(), status=resp.status, content_type=resp.content_type)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
