"""The whole money path over real sockets, for the saga tests.

Both simulators, the Deriv gateway (gRPC over TCP, journal in the same database), the M-Pesa
callback endpoints, the outbox relay and the saga consumer on Redis Streams (or the in-process
bus), all against one real database. Tests drive the workers step by step (`pump`) so that
nothing runs behind their back; the crash tests run the saga worker as a separate process.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from pydantic import SecretStr

from application.payments.decisions import SagaPolicy, Step
from application.payments.deposits import DepositOrchestrator
from application.payments.floats import fund_float
from application.payments.lost_push import LostPushRecords
from application.payments.paybill import PaybillDeposits
from application.payments.ports import MpesaGateway, StepRecord, StkPushAccepted, Verdict
from application.payments.rates import FixedRates
from application.payments.saga import SagaRunner
from application.payments.withdrawals import WithdrawalOrchestrator
from deriv_gateway.server import GatewayServer
from deriv_gateway.simulator import DEFAULT_AGENT_TOKEN, DerivSimulator
from deriv_gateway.simulator import SimulatorConfig as DerivSimConfig
from deriv_gateway.simulator.rest import DerivRestSimulator, RestServerConfig
from domain.payments.idempotency import IdempotencyKey
from domain.payments.status import TransactionStatus
from domain.payments.stk_evidence import StkQueryAnswer
from domain.payments.transaction import Transaction
from domain.shared.clock import Clock
from domain.shared.ids import TransactionId, UserId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.email import Email
from domain.user.password_hash import PasswordHash
from domain.user.phone_number import PhoneNumber
from domain.user.user import User
from domain.wallet.account_kind import AccountKind
from domain.wallet.deriv_rules import DerivTransferLimits
from domain.wallet.money import Currency, Money
from mpesa_adapter.callback_server import CallbackServer
from mpesa_adapter.config import DarajaConfig
from mpesa_adapter.simulator import DarajaSimulator
from mpesa_adapter.simulator import SimulatorConfig as MpesaSimConfig
from mpesa_adapter.simulator.config import DEFAULT_INITIATOR_PASSWORD, SANDBOX_PASSKEY, SANDBOX_SHORTCODE
from penpay.bootstrap import bootstrap, payments
from penpay.settings import Settings
from penpay.wiring.callbacks import build_callback_server
from penpay.wiring.gateway import build_gateway
from penpay.wiring.saga_worker import build_saga_worker
from persistence.unit_of_work import SqlUnitOfWork
from workers.bus import MessageBus
from workers.consumer import EventConsumer
from workers.relay import OutboxRelay
from workers.sagas import Sweeper

CONSUMER_KEY = "penpay-saga-test-key"
CONSUMER_SECRET = "penpay-saga-test-secret"
B2C_SHORTCODE = "600992"
CLIENT_LOGINID = "CR90000001"
CLIENT_TOKEN = "sim-client1-token"
# The same simulated people on Deriv's new (REST) API: a user bound there is "@nickname".
REST_CLIENT_NICKNAME = "alice_w"  # CR90000001's nickname
REST_CLIENT_TOKEN = "sim-rest-client1-pat"
REST_AGENT_TOKEN = "sim-rest-agent-pat"  # CR90000000, the v3 agent's account
AGENT_FLOAT_USD = Money(50_000_00, Currency.USD)  # the simulator's agent balance
MPESA_FLOAT_KES = Money(5_000_000_00, Currency.KES)
# The simulator's default agent accepts USD 10 to 2,000 per transfer: PenPay checks the same at initiation.
TRANSFER_LIMITS = DerivTransferLimits(Money(10_00, Currency.USD), Money(2_000_00, Currency.USD))

FAST_POLICY = SagaPolicy(
    call_grace=timedelta(seconds=1),
    stk_callback_wait=timedelta(seconds=2),
    b2c_result_wait=timedelta(seconds=2),
    query_interval=timedelta(seconds=0.5),
    max_attempts=4,
    float_retry=timedelta(seconds=0.5),
    deferral_cap=timedelta(seconds=0.3),  # Deriv's RateLimit asks for 60 s
)
# Queries of one kind a minute apart (an armed query's window with them): no counted query follows
# another within a test's time.
PATIENT_QUERIES = replace(FAST_POLICY, query_interval=timedelta(seconds=60))


@dataclass
class Stack:
    database_url: str
    engine: Any
    deriv_sim: DerivSimulator
    rest_sim: DerivRestSimulator
    mpesa_sim: DarajaSimulator
    gateway: GatewayServer
    callbacks: CallbackServer
    daraja_config: DarajaConfig
    saga: SagaRunner
    deposits: DepositOrchestrator
    withdrawals: WithdrawalOrchestrator
    bus: MessageBus
    relay: OutboxRelay
    consumer: EventConsumer
    sweeper: Sweeper
    http: aiohttp.ClientSession
    paybill: PaybillDeposits
    clock: Clock  # the core's: what stamps the stack's records

    def uow(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine)

    # --- people and money -----------------------------------------------------------------

    async def user(self, phone: str = "254712345678", loginid: str = CLIENT_LOGINID) -> UserId:
        """A user with a verified phone and a bound Deriv account (token stored encrypted)."""
        user = User.register(
            email=Email(f"u{secrets.token_hex(4)}@example.com"),
            phone=PhoneNumber.mpesa(phone),
            password_hash=PasswordHash("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"),
        )
        user.verify_phone()
        user.bind_deriv_account(DerivLoginId(loginid))
        async with self.uow() as uow:
            await uow.users.add(user)
            await uow.commit()
        async with self.uow() as uow:
            await uow.users.store_deriv_credentials(user.id, token=CLIENT_TOKEN, scopes=("payments", "read"))
            await uow.commit()
        return user.id

    async def rest_user(
        self,
        phone: str = "254712345679",
        nickname: str = REST_CLIENT_NICKNAME,
        token: str = REST_CLIENT_TOKEN,
    ) -> UserId:
        """A user with a verified phone bound to a new-API (REST) account (token stored encrypted)."""
        user = User.register(
            email=Email(f"r{secrets.token_hex(4)}@example.com"),
            phone=PhoneNumber.mpesa(phone),
            password_hash=PasswordHash("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"),
        )
        user.verify_phone()
        user.bind_deriv_account(DerivLoginId.rest(nickname))
        async with self.uow() as uow:
            await uow.users.add(user)
            await uow.commit()
        async with self.uow() as uow:
            await uow.users.store_deriv_credentials(
                user.id, token=token, scopes=("account_manage", "payment")
            )
            await uow.commit()
        return user.id

    def rest_posts(self, path: str, request_id: str | None = None) -> int:
        """POSTs the REST simulator received on `path` (for `request_id` when given)."""
        return sum(
            1
            for e in self.rest_sim.wire
            if e["method"] == "POST"
            and e["path"] == path
            and (request_id is None or (e.get("body") or {}).get("data", {}).get("request_id") == request_id)
        )

    async def rest_fault(self, **rule: Any) -> None:
        async with self.http.post(f"{self.rest_sim.base_url}/__control__/faults", json=rule) as response:
            assert response.status in (200, 201), await response.text()

    async def mpesa_fault(self, **rule: Any) -> None:
        async with self.http.post(f"{self.mpesa_sim.base_url}/__control__/faults", json=rule) as response:
            assert response.status == 201, await response.text()

    async def clear_mpesa_faults(self) -> None:
        async with self.http.delete(f"{self.mpesa_sim.base_url}/__control__/faults") as response:
            assert response.status == 200, await response.text()

    async def fund_floats(self, usd: Money = AGENT_FLOAT_USD, kes: Money = MPESA_FLOAT_KES) -> None:
        async with self.uow() as uow:
            if usd.is_positive():
                await fund_float(uow, AccountKind.DERIV_AGENT_FLOAT, usd, "opening balance")
            if kes.is_positive():
                await fund_float(uow, AccountKind.MPESA_FLOAT, kes, "opening balance")
            await uow.commit()

    async def deposit(
        self,
        user_id: UserId,
        shillings: int,
        key: str | None = None,
        *,
        by: DepositOrchestrator | None = None,
    ) -> Transaction:
        """InitiateDeposit (`by`: an orchestrator of the test's own, see initiating_with), returned
        once the push it sent (if it sends it) has its answer recorded: what a test reads next is
        not a race with it."""
        deposits = by or self.deposits
        tx = await deposits.initiate_deposit(
            user_id=user_id,
            amount=Money(shillings * 100, Currency.KES),
            phone=None,
            idempotency_key_hash=_key(user_id, key or secrets.token_hex(8), "deposit"),
        )
        await deposits.drain()
        return tx

    def initiating_with(self, saga: SagaRunner) -> DepositOrchestrator:
        """The stack's InitiateDeposit, its STK push sent through `saga` (a test's port or checkpoint)."""
        d = self.deposits
        return DepositOrchestrator(unit_of_work=d._uow, rates=d._rates, transfer_limits=d._limits, saga=saga)

    async def withdrawal(self, user_id: UserId, cents: int, key: str | None = None) -> Transaction:
        return await self.withdrawals.initiate_withdrawal(
            user_id=user_id,
            amount=Money(cents, Currency.USD),
            idempotency_key_hash=_key(user_id, key or secrets.token_hex(8), "withdrawal"),
        )

    async def withdrawal_code(self, loginid: str = CLIENT_LOGINID) -> str:
        async with self.http.get(f"{self.deriv_sim.control_url}/mailbox/{loginid}") as response:
            assert response.status == 200, await response.text()
            mails = await response.json()
        items = mails if isinstance(mails, list) else mails.get("mails") or mails.get("messages") or []
        assert items, f"no mail for {loginid}: {mails}"
        return str(items[-1]["code"])

    async def get(self, tx_id: TransactionId) -> Transaction:
        async with self.uow() as uow:
            tx = await uow.transactions.get(tx_id)
        assert tx is not None
        return tx

    # --- driving the workers ----------------------------------------------------------------

    async def pump(self) -> None:
        await self.relay.relay_once()
        await self.consumer.process_once()

    async def settle(
        self, tx_id: TransactionId, until: set[TransactionStatus] | None = None, timeout: float = 20.0
    ) -> Transaction:
        """Run relay, consumer and sweeper until the transaction reaches one of `until`
        (default: any terminal status or NEEDS_REVIEW)."""
        wanted = until or {
            TransactionStatus.COMPLETED,
            TransactionStatus.FAILED,
            TransactionStatus.REVERSED,
            TransactionStatus.NEEDS_REVIEW,
        }
        deadline = time.monotonic() + timeout
        while True:
            await self.saga.drain()  # the calls a request of this stack sent have their answers
            await self.pump()
            tx = await self.get(tx_id)
            if tx.status in wanted:
                return tx
            if time.monotonic() > deadline:
                raise AssertionError(f"{tx_id} stuck in {tx.status} ({tx.failure_reason})")
            await self.sweeper.sweep_once()
            await asyncio.sleep(0.05)

    async def deriv_fault(self, **rule: Any) -> None:
        async with self.http.post(f"{self.deriv_sim.control_url}/faults", json=rule) as response:
            assert response.status in (200, 201), await response.text()

    async def events(self, event_type: str) -> list[str]:
        """Payloads of the outbox rows of this type."""
        from sqlalchemy import select

        from persistence.tables import domain_events

        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(domain_events.c.payload).where(domain_events.c.event_type == event_type)
            )
            return [row.payload for row in rows]

    async def wallet_balance(self, user_id: UserId, currency: Currency) -> int:
        async with self.uow() as uow:
            account = await uow.ledger.get_or_create_account(
                kind=AccountKind.USER_WALLET, currency=currency, user_id=user_id
            )
            return account.balance_minor

    async def assert_consistent(self) -> None:
        """The consistency checker over the database and both simulators' books."""
        from persistence.consistency.check import check_consistency
        from proving.simulator_books import fetch_simulator_books

        books = await fetch_simulator_books(
            deriv_control_url=self.deriv_sim.control_url,
            mpesa_control_url=f"{self.mpesa_sim.base_url}/__control__",
            deriv_opening_balance_cents=AGENT_FLOAT_USD.amount_minor,
        )
        report = await check_consistency(self.engine, now=self.clock.now(), books=books)
        assert not report.violations, [f"{v.code}: {v.message}" for v in report.violations]

    async def attempts(self, tx_id: TransactionId, step: Step) -> int:
        """How many times the saga-step journal says `step` was started for the transaction."""
        from sqlalchemy import select

        from persistence.tables import saga_steps

        async with self.engine.connect() as connection:
            attempts = await connection.scalar(
                select(saga_steps.c.attempts)
                .where(saga_steps.c.transaction_id == tx_id.value)
                .where(saga_steps.c.step == step.value)
            )
        return int(attempts or 0)

    async def step_record(self, tx_id: TransactionId, step: Step) -> StepRecord | None:
        """The saga-step journal's row of `step` for the transaction, as the saga reads it."""
        async with self.uow() as uow:
            return (await uow.saga_steps.get(tx_id)).get(step.value)

    # --- the simulators' books --------------------------------------------------------------

    async def deriv_transfers(self, reference: str) -> int:
        async with self.http.get(
            f"{self.deriv_sim.control_url}/books/transfers", params={"description_contains": reference}
        ) as response:
            return int((await response.json())["count"])

    async def mpesa_books(self) -> dict[str, Any]:
        async with self.http.get(f"{self.mpesa_sim.base_url}/__control__/books") as response:
            return dict(await response.json())

    async def payouts_to(self, phone: str) -> int:
        """B2C payments the M-Pesa simulator made to this phone."""
        books = await self.mpesa_books()
        return sum(1 for r in books["b2c"]["transactions"] if r["phone"] == phone and r["paid"])


def _key(user_id: UserId, raw: str, operation: str) -> str:
    return IdempotencyKey.create(raw, scope=str(user_id), operation=operation).hash_hex


def daraja_config(sim: DarajaSimulator, callbacks: CallbackServer, secret: str) -> DarajaConfig:
    assert sim.base_url is not None
    return DarajaConfig(
        base_url=sim.base_url,
        consumer_key=CONSUMER_KEY,
        consumer_secret=CONSUMER_SECRET,
        shortcode=SANDBOX_SHORTCODE,
        passkey=SANDBOX_PASSKEY,
        initiator_name="testapi",
        initiator_password=DEFAULT_INITIATOR_PASSWORD,
        cert_pem=sim.certificate_pem().encode(),
        callback_base_url=callbacks.base_url,
        callback_secret=secret,
        b2c_shortcode=B2C_SHORTCODE,
        request_timeout=3.0,
        # The simulator answers on this test's own event loop: under CI's load (three workers on two
        # cores) a 1 s connect bound once failed a reversal into UNKNOWN (test_paybill_refund)
        connect_timeout=3.0,
        retry_initial_wait=0.01,
        retry_max_wait=0.05,
    )


@asynccontextmanager
async def running_stack(
    database_url: str,
    bus: MessageBus,
    *,
    policy: SagaPolicy = FAST_POLICY,
    deriv_overrides: dict[str, Any] | None = None,
    mpesa_overrides: dict[str, Any] | None = None,
    gateway_overrides: dict[str, Any] | None = None,
    mpesa_base_url: str | None = None,  # PenPay's Daraja client goes there (a proxy) instead
    initiator_pushes: bool = True,  # False: the saga sends the STK push (the tests of that step)
    initiator_payouts: bool = True,  # False: the saga sends the B2C payout (the tests of that step)
) -> AsyncIterator[Stack]:
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())

        deriv_sim = DerivSimulator(
            DerivSimConfig(port=0, control_port=0, seed=7, request_timeout=3.0, **(deriv_overrides or {}))
        )
        await stack.enter_async_context(deriv_sim)
        rest_sim = DerivRestSimulator(deriv_sim, RestServerConfig(port=0))  # the same books
        await rest_sim.start()
        stack.push_async_callback(rest_sim.stop)
        mpesa_sim = DarajaSimulator(
            MpesaSimConfig(
                port=0,
                seed=secrets.randbelow(10**9),
                consumer_key=CONSUMER_KEY,
                consumer_secret=CONSUMER_SECRET,
                **(
                    {"callback_delay": 0.2, "late_delay": 0.6, "callback_timeout": 5.0}
                    | (mpesa_overrides or {})
                ),
            )
        )
        await mpesa_sim.start()
        stack.push_async_callback(mpesa_sim.stop)

        # The stack is wired as `penpay up` wires it (penpay/wiring), from settings naming the
        # simulators, with the tests' faster timings handed in where settings carry none.
        secret = secrets.token_urlsafe(24)
        settings = Settings(  # type: ignore[call-arg]  # _env_file: pydantic-settings' init option
            _env_file=None,
            app_env="testing",
            database_url=database_url,
            redis_url=None,
            deriv_ws_url=deriv_sim.url(app_id=None),
            deriv_app_id="1089",
            deriv_agent_token=SecretStr(DEFAULT_AGENT_TOKEN),
            deriv_rest_base_url=rest_sim.base_url,
            deriv_rest_app_id="app-sim-1",
            deriv_rest_agent_token=SecretStr(REST_AGENT_TOKEN),
            gateway_addr="127.0.0.1:0",
            gateway_request_timeout=5.0,
            gateway_unknown_settle=1.0,
            mpesa_callback_secret=SecretStr(secret),
            mpesa_allowed_ips="127.0.0.1",
            trusted_proxies="",
            float_low_usd_cents=0,
            float_low_kes_cents=0,
            sweeper_min_age=0.3,
            sweeper_event_grace=0.3,  # events the tests leave undelivered are swept as soon as ever
            sweeper_interval=0.2,
        )
        gateway = build_gateway(
            settings,
            backoff_initial=0.05,
            backoff_max=0.5,
            rest_poll_interval=0.05,
            **(gateway_overrides or {}),
        )
        await gateway.start()
        stack.push_async_callback(gateway.stop, 0.2)
        await gateway.wait_serving(10)

        core = bootstrap(settings.model_copy(update={"gateway_addr": gateway.address}), pool_size=10)
        stack.push_async_callback(core.close)
        engine = core.engine
        paybill = PaybillDeposits(
            unit_of_work=core.unit_of_work,
            rates=FixedRates(),
            transfer_limits=TRANSFER_LIMITS,
            shortcode=SANDBOX_SHORTCODE,
        )
        callbacks = build_callback_server(core, host="127.0.0.1", port=0, paybill=paybill, saga_policy=policy)
        await callbacks.start()
        stack.push_async_callback(callbacks.stop)

        config = daraja_config(mpesa_sim, callbacks, secret)
        if mpesa_base_url is not None:
            config = replace(config, base_url=mpesa_base_url)
        wired = payments(
            core,
            mpesa_config=config,
            saga_policy=policy,
            initiator_pushes=initiator_pushes,
            initiator_payouts=initiator_payouts,
        )
        stack.push_async_callback(wired.close)
        worker = build_saga_worker(
            core,
            payments=wired,
            bus=bus,
            in_process=False,
            relay=True,
            relay_options={"batch_size": 200},
            block_ms=50,
            claim_idle_ms=2_000,
        )
        stack.push_async_callback(worker.close)
        assert worker.relay and worker.saga_consumer and worker.sweeper
        yield Stack(
            database_url=database_url,
            engine=engine,
            deriv_sim=deriv_sim,
            rest_sim=rest_sim,
            mpesa_sim=mpesa_sim,
            gateway=gateway,
            callbacks=callbacks,
            daraja_config=config,
            saga=wired.saga,
            deposits=wired.deposits,
            withdrawals=wired.withdrawals,
            bus=bus,
            relay=worker.relay,
            consumer=worker.saga_consumer,
            sweeper=worker.sweeper,
            http=http,
            paybill=paybill,
            clock=core.clock,
        )


class PassThroughMpesa:
    """The stack's own M-Pesa port, every call passed on: a test subclasses it to change one call."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._inner: MpesaGateway = stack.saga._mpesa

    async def stk_push(self, *, transaction_id: TransactionId, phone: str, amount: Money) -> StkPushAccepted:
        return await self._inner.stk_push(transaction_id=transaction_id, phone=phone, amount=amount)

    async def stk_answer_recorded(self, checkout_request_id: str, *, parked: bool = False) -> bool:
        return await self._inner.stk_answer_recorded(checkout_request_id, parked=parked)

    async def query_stk(self, deposit: Transaction) -> StkQueryAnswer | Verdict:
        return await self._inner.query_stk(deposit)

    async def lost_push_records(self, *, since: datetime, until: datetime) -> LostPushRecords:
        return await self._inner.lost_push_records(since=since, until=until)

    async def b2c(self, *, originator_conversation_id: str, phone: str, amount: Money) -> str:
        return await self._inner.b2c(
            originator_conversation_id=originator_conversation_id, phone=phone, amount=amount
        )

    async def confirm_b2c(
        self, originator_conversation_id: str, *, read: Transaction | None = None
    ) -> Verdict:
        return await self._inner.confirm_b2c(originator_conversation_id, read=read)
