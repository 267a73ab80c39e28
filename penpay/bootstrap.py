"""The composition root: settings in, adapters wired to ports out.

Entrypoints (commands, daemons, the future API and saga workers) ask this module for what
they need instead of building adapters themselves, so there is one place that decides, for
example, "Redis Streams when PENPAY_REDIS_URL is set, the in-process bus otherwise".
Modelled on cosmicpython's bootstrap.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, TypeVar

from domain.shared.clock import Clock, SystemClock
from penpay.production import Part, refuse_development_values
from penpay.settings import Settings, SettingsError, get_settings
from persistence.audit_sealer import seal_in_background
from persistence.engine import create_engine
from persistence.idempotency_store import SqlIdempotencyStore
from persistence.unit_of_work import SqlUnitOfWork

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from application.payments.decisions import SagaPolicy
    from application.payments.deposits import DepositOrchestrator
    from application.payments.paybill import PaybillDeposits
    from application.payments.ports import MoneyMovementPolicy
    from application.payments.queries import TransactionQueries
    from application.payments.saga import SagaRunner
    from application.payments.withdrawals import WithdrawalOrchestrator
    from domain.shared.ids import UserId
    from domain.user.kyc_snapshot import KycSnapshot
    from domain.wallet.deriv_rules import DerivTransferLimits
    from mpesa_adapter.callback_store import SqlCallbackInbox
    from mpesa_adapter.client import DarajaClient
    from mpesa_adapter.config import DarajaConfig
    from mpesa_adapter.lost_push_reads import LostPushReads
    from mpesa_adapter.pull_reads import PullReads
    from mpesa_adapter.shared_token import RedisTokenCache
    from security.access_tokens import RsaAccessTokens
    from security.passwords import Argon2idHasher
    from security.pii import PiiCipher
    from workers.bus import MessageBus


TokensT = TypeVar("TokensT", bound="RsaAccessTokens")


def message_bus(
    settings: Settings, *, clock: Clock, stream_prefix: str = "", stream_maxlen: int | None = None
) -> MessageBus:
    """Redis Streams when configured; otherwise the in-process bus of the embedded stack."""
    if settings.redis_url:
        from workers.redis_bus import DEFAULT_MAXLEN, RedisStreamsBus

        return RedisStreamsBus.from_url(
            settings.redis_url, prefix=stream_prefix, maxlen=stream_maxlen or DEFAULT_MAXLEN, clock=clock
        )
    from workers.memory_bus import DEFAULT_MAXLEN as MEMORY_MAXLEN
    from workers.memory_bus import InProcessBus

    return InProcessBus(maxlen=stream_maxlen or MEMORY_MAXLEN, clock=clock)


def daraja_config(settings: Settings) -> DarajaConfig:
    from mpesa_adapter.config import DarajaConfig

    refuse_development_values(settings, Part.MPESA)

    return DarajaConfig(
        base_url=settings.mpesa_base_url,
        consumer_key=settings.mpesa_consumer_key.get_secret_value(),
        consumer_secret=settings.mpesa_consumer_secret.get_secret_value(),
        shortcode=settings.mpesa_shortcode,
        passkey=settings.mpesa_passkey.get_secret_value(),
        initiator_name=settings.mpesa_initiator_name,
        initiator_password=settings.mpesa_initiator_password.get_secret_value(),
        cert_file=settings.mpesa_cert_file,
        callback_base_url=settings.mpesa_callback_base_url,
        callback_secret=settings.mpesa_callback_secret.get_secret_value(),
        security_credential=settings.mpesa_security_credential.get_secret_value(),
        b2c_shortcode=settings.mpesa_b2c_shortcode,
        transaction_type=settings.mpesa_transaction_type,
        till_number=settings.mpesa_till_number,
        c2b_shortcode=settings.mpesa_c2b_shortcode,
        c2b_response_type=settings.mpesa_c2b_response_type,
    )


def daraja_token_cache(settings: Settings, config: DarajaConfig) -> RedisTokenCache | None:
    """With Redis, one Daraja access token shared by every process (Daraja revokes a consumer key's
    previous token on each issue); None: the Daraja client's in-process cache (the embedded stack)."""
    if not settings.redis_url:
        return None
    from mpesa_adapter.shared_token import RedisTokenCache

    return RedisTokenCache.for_config(settings.redis_url, config)


def daraja_client(
    settings: Settings,
    on_close: Callable[[Callable[[], Awaitable[object]]], object],
    config: DarajaConfig | None = None,
    *,
    clock: Clock,
) -> DarajaClient:
    """A Daraja client on `config` (default: from settings) with the shared token cache, stamping
    its STK pushes by `clock`; what closes both is handed to `on_close` (a list's append)."""
    from mpesa_adapter.client import DarajaClient

    config = config or daraja_config(settings)
    tokens = daraja_token_cache(settings, config)
    client = DarajaClient(config, token_cache=tokens, now=clock.now)
    on_close(client.close)
    if tokens is not None:
        on_close(tokens.close)
    return client


def pull_reads(settings: Settings, client: DarajaClient) -> PullReads:
    """Pull Transactions of PenPay's shortcodes over `client`, registered under the nominated
    number and PenPay's callback base URL (reconciliation and the review queue read it)."""
    from mpesa_adapter.pull_reads import PullReads

    return PullReads(
        client,
        nominated_number=settings.mpesa_pull_nominated_number,
        callback_url=f"{settings.mpesa_callback_base_url.rstrip('/')}/pulltransactions",
    )


def lost_push_reads(core: Core, client: DarajaClient) -> LostPushReads:
    """What M-Pesa's records show of a push whose answer was lost (the saga and the review queue)."""
    from mpesa_adapter.lost_push_reads import LostPushReads

    return LostPushReads(pull_reads(core.settings, client), core.engine)


def deriv_transfer_limits(settings: Settings) -> DerivTransferLimits:
    """PENPAY_DERIV_TRANSFER_MIN_USD / _MAX_USD (exact decimals of at most 2 places) as USD Money."""
    from domain.wallet.deriv_rules import DerivTransferLimits
    from domain.wallet.money import Currency, Money

    def usd(amount: Decimal) -> Money:
        return Money(int(amount.scaleb(Currency.USD.minor_digits)), Currency.USD)

    return DerivTransferLimits(usd(settings.deriv_transfer_min_usd), usd(settings.deriv_transfer_max_usd))


def access_tokens(settings: Settings, cls: type[TokensT]) -> TokensT:
    """PENPAY_JWT_*: the signing keys (a throwaway key outside production when unset)."""
    from datetime import timedelta

    return cls.configured(
        settings.jwt_private_keys.get_secret_value(),
        production=settings.app_env == "production",
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=timedelta(seconds=settings.jwt_ttl_seconds),
    )


def password_hasher(settings: Settings) -> Argon2idHasher:
    """PENPAY_ARGON2_*: Argon2id parameters (production refuses less than OWASP's minimum)."""
    from security.passwords import Argon2idHasher, Argon2Parameters

    parameters = Argon2Parameters.configured(
        time_cost=settings.argon2_time_cost,
        memory_cost_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        production=settings.app_env == "production",
    )
    return Argon2idHasher(parameters, max_concurrency=settings.argon2_max_concurrency)


def pii_cipher(settings: Settings) -> PiiCipher:
    """PENPAY_PII_KEYS: AES-256-GCM keys (the development key outside production when unset)."""
    from security.pii import PiiCipher

    return PiiCipher.configured(
        settings.pii_keys.get_secret_value(), production=settings.app_env == "production"
    )


@dataclass
class Core:
    """What every PenPay process that touches the database shares."""

    settings: Settings
    engine: AsyncEngine
    clock: Clock
    idempotency: SqlIdempotencyStore
    pii: PiiCipher  # PENPAY_PII_KEYS: personal data at rest
    _buses: list[MessageBus] = field(default_factory=list)

    def unit_of_work(self, *, actor: str = "system", wait_for_seal: bool = True) -> SqlUnitOfWork:
        return SqlUnitOfWork(
            self.engine, clock=self.clock, actor=actor, cipher=self.pii, wait_for_seal=wait_for_seal
        )

    def message_bus(self, *, stream_prefix: str = "", stream_maxlen: int | None = None) -> MessageBus:
        bus = message_bus(
            self.settings, clock=self.clock, stream_prefix=stream_prefix, stream_maxlen=stream_maxlen
        )
        self._buses.append(bus)
        return bus

    async def close(self) -> None:
        from persistence.float_leases import retire_held

        for bus in self._buses:
            await bus.close()
        # this process's float leases: their allowance back now, not after their expiry
        await retire_held(self.engine, self.clock.now())
        await self.engine.dispose()


def crash_checkpoint(settings: Settings) -> Callable[[str], None]:
    """The saga checkpoint: a no-op, or (fault injection, never in production) kill -9 of this
    process when it reaches the named point, as a crash test or a chaos run asks."""
    from application.payments.saga import no_checkpoint

    target = settings.crash_at
    if not target:
        return no_checkpoint
    if settings.app_env == "production":
        raise SettingsError("PENPAY_CRASH_AT: fault injection, refused in production; expected it unset")

    def checkpoint(name: str) -> None:
        if name == target:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)

    return checkpoint


@dataclass
class Payments:
    """The payment saga runner, the two orchestrators and the transaction reads, wired to Daraja and
    the Deriv gateway."""

    saga: SagaRunner
    deposits: DepositOrchestrator
    withdrawals: WithdrawalOrchestrator
    transactions: TransactionQueries
    _closers: list[Callable[[], Awaitable[object]]] = field(default_factory=list)

    async def close(self) -> None:
        for close in self._closers:
            await close()


def payments(
    core: Core,
    *,
    policy: MoneyMovementPolicy | None = None,
    rest_token: Callable[[UserId], Awaitable[str]] | None = None,
    mpesa_config: DarajaConfig | None = None,
    saga_policy: SagaPolicy | None = None,
    initiator_pushes: bool = True,
    initiator_payouts: bool = True,
) -> Payments:
    """The sagas and use cases from settings; tests hand in a Daraja configuration (the simulator's
    certificate, short retries) and saga timings the settings do not carry. `initiator_pushes`:
    InitiateDeposit sends the STK push (production), `initiator_payouts`: ConfirmWithdrawal sends
    the B2C payout (production); False leaves either to the saga workers (the saga tests that drive
    that step themselves)."""
    from datetime import timedelta

    from application.payments.deposits import DepositOrchestrator
    from application.payments.queries import TransactionQueries
    from application.payments.rates import FixedRates
    from application.payments.saga import SagaRunner
    from application.payments.withdrawals import WithdrawalOrchestrator
    from deriv_gateway.channel import gateway_channel
    from deriv_gateway.payments_client import GatewayDerivPayments
    from domain.wallet.account_kind import AccountKind
    from mpesa_adapter.confirmer import CallbackConfirmer
    from mpesa_adapter.saga_port import DarajaMpesaGateway

    s = core.settings
    closers: list[Callable[[], Awaitable[object]]] = []
    daraja = daraja_client(s, closers.append, mpesa_config, clock=core.clock)
    channel = gateway_channel(s.gateway_addr)
    closers.append(channel.close)
    deriv = GatewayDerivPayments(channel, timeout=s.gateway_request_timeout + 10)
    policy_of_saga = saga_policy or settings_saga_policy(s)
    mpesa = DarajaMpesaGateway(
        daraja,
        CallbackConfirmer(daraja, callback_inbox(core, policy_of_saga)),
        lost_push=lost_push_reads(core, daraja),
    )
    checkpoint = crash_checkpoint(s)
    saga = SagaRunner(
        unit_of_work=core.unit_of_work,
        mpesa=mpesa,
        # the one adapter is both gateways
        deriv_deposits=deriv,
        deriv_withdrawals=deriv,
        policy=policy_of_saga,
        checkpoint=checkpoint,
        float_thresholds={
            AccountKind.DERIV_AGENT_FLOAT: s.float_low_usd_cents,
            AccountKind.MPESA_FLOAT: s.float_low_kes_cents,
        },
    )

    # The API answers without waiting for the audit seal: the records are committed with the
    # action (audit_pending) and chained a moment later (by the background sealer, or inline by
    # this process's seal_soon when PENPAY_AUDIT_SEALER=inline).
    def use_case_unit_of_work() -> SqlUnitOfWork:
        return core.unit_of_work(wait_for_seal=False)

    rates = FixedRates(
        kes_per_usd_buy=s.fx_kes_per_usd_buy,
        kes_per_usd_sell=s.fx_kes_per_usd_sell,
        ttl=timedelta(seconds=s.fx_quote_ttl),
    )
    limits = deriv_transfer_limits(s)
    # The API sends each new deposit's STK push itself, its intent committed with the deposit.
    deposits = DepositOrchestrator(
        unit_of_work=use_case_unit_of_work,
        rates=rates,
        transfer_limits=limits,
        policy=policy,
        saga=saga if initiator_pushes else None,
    )
    # The pushes and payouts in flight (sent by this process's requests) answered before the clients close
    closers.insert(0, saga.drain)
    withdrawals = WithdrawalOrchestrator(
        unit_of_work=use_case_unit_of_work,
        rates=rates,
        deriv=deriv,
        saga=saga,
        transfer_limits=limits,
        policy=policy,
        checkpoint=checkpoint,
        rest_token=rest_token,
        pays_out=initiator_payouts,
    )
    transactions = TransactionQueries(unit_of_work=use_case_unit_of_work)
    return Payments(saga, deposits, withdrawals, transactions, closers)


def evidence_unit_of_work(
    engine: AsyncEngine, clock: Clock, cipher: PiiCipher | None = None
) -> Callable[[], SqlUnitOfWork]:
    """The unit of work M-Pesa's answers are recorded in (mpesa_adapter.callback_store): the
    adapter's actor, and no audit seal of its own: its records wait, committed, for the next seal
    of any process, the saga's, which the answer wakes (one seal pass per callback was more
    statements than the callback itself)."""
    from mpesa_adapter.callback_store import ADAPTER_ACTOR

    def unit_of_work() -> SqlUnitOfWork:
        return SqlUnitOfWork(
            engine, clock=clock, actor=ADAPTER_ACTOR, cipher=cipher, wait_for_seal=False, seal_here=False
        )

    return unit_of_work


def settings_saga_policy(settings: Settings) -> SagaPolicy:
    """The sagas' timings and bounds as settings give them (PENPAY_SAGA_*)."""
    from datetime import timedelta

    from application.payments.decisions import SagaPolicy

    return SagaPolicy(
        call_grace=timedelta(seconds=settings.saga_call_grace),
        stk_callback_wait=timedelta(seconds=settings.saga_stk_callback_wait),
        b2c_result_wait=timedelta(seconds=settings.saga_b2c_result_wait),
        query_interval=timedelta(seconds=settings.saga_query_interval),
        max_attempts=settings.saga_max_attempts,
    )


def callback_inbox(core: Core, saga_policy: SagaPolicy | None = None) -> SqlCallbackInbox:
    """Where M-Pesa's answers (callbacks, query results) are recorded, on the core's clock;
    `saga_policy`: the running saga's when it is not the settings' (the tests' faster timings)."""
    from mpesa_adapter.callback_store import SqlCallbackInbox

    return SqlCallbackInbox(
        core.engine,
        evidence_unit_of_work(core.engine, core.clock, core.pii),
        saga_policy=saga_policy or settings_saga_policy(core.settings),
    )


def paybill_deposits(core: Core) -> PaybillDeposits:
    """The paybill (C2B) use case the callback endpoints hand validations and confirmations to."""
    from datetime import timedelta

    from application.identity.compliance import CompliancePolicy
    from application.identity.ports import KnownUser
    from application.payments.paybill import PaybillDeposits
    from application.payments.rates import FixedRates
    from persistence.transaction_stats import SqlTransactionStats

    async def no_refresh(user_id: UserId, *, known: KnownUser | None = None) -> KycSnapshot:
        raise RuntimeError("paybill validation judges the KYC snapshot PenPay holds")

    s = core.settings
    return PaybillDeposits(
        unit_of_work=core.unit_of_work,
        rates=FixedRates(
            kes_per_usd_buy=s.fx_kes_per_usd_buy,
            kes_per_usd_sell=s.fx_kes_per_usd_sell,
            ttl=timedelta(seconds=s.fx_quote_ttl),
        ),
        transfer_limits=deriv_transfer_limits(s),
        shortcode=s.mpesa_c2b_shortcode or s.mpesa_shortcode,
        policy=CompliancePolicy(
            unit_of_work=core.unit_of_work,
            stats=SqlTransactionStats(core.engine),
            refresh_kyc=no_refresh,
            clock=core.clock,
        ),
    )


def bootstrap(settings: Settings | None = None, *, clock: Clock | None = None, pool_size: int = 20) -> Core:
    settings = settings or get_settings()
    refuse_development_values(settings, Part.DATABASE)
    cipher = pii_cipher(settings)  # in production: refused at start when PENPAY_PII_KEYS is unset
    clock = clock or SystemClock()
    engine = create_engine(settings.database_url, pool_size=pool_size)
    if settings.audit_sealer == "background":
        # The audit daemon's sealer chains every record; this process only commits them.
        seal_in_background(engine)
    return Core(
        settings=settings,
        engine=engine,
        clock=clock,
        idempotency=SqlIdempotencyStore(engine, clock),
        pii=cipher,
    )
