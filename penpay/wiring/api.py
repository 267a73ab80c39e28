"""Wiring of the public gRPC API from a bootstrap.Core (the lead's composition root stays in
penpay/bootstrap.py; this module adds the API's part of it).

    core = bootstrap.bootstrap(settings)
    api = build_api(core)              # every adapter chosen from core.settings
    await api.server.start() ... await api.close()

Every adapter can be handed in instead (tests pass a fast hasher, a fixed clock via the Core,
a gateway channel of their own). What is chosen from settings:
- access tokens: RS256 keys from PENPAY_JWT_PRIVATE_KEYS (security/access_tokens.py; outside
  production a fresh key per process when unset), with operator roles (penpay_api/auth.py);
- Argon2id from PENPAY_ARGON2_*; rate limits in Redis when PENPAY_REDIS_URL is set;
- Deriv binding and KYC through the Deriv gateway's gRPC (PENPAY_GATEWAY_ADDR);
- notifications (penpay/notifiers.py): SMS by Africa's Talking (PENPAY_SMS_AT_*), email by SMTP
  (PENPAY_SMTP_*), both required in production; outside production an unset one is the
  development notifier (readable through the dev-only penpay.dev.v1.DevService);
- payments: bootstrap.payments(core, policy=<KYC/AML CompliancePolicy>);
- the consistency check: persistence.consistency.check_consistency.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, Literal

import grpc

from application.identity.compliance import CompliancePolicy
from application.identity.kyc_review import KycAttestationReview
from application.identity.ports import (
    DerivAccountGateway,
    DerivOAuth,
    IdentityUnitOfWork,
    Notifier,
    PasswordHasher,
    RateLimiter,
)
from application.identity.rate_limits import RateLimitGuard
from application.identity.service import IdentityService
from application.reconciliation.closing import ReconciliationItemReview
from application.reconciliation.write_off import SuspenseWriteOffs
from application.review.service import ReviewService
from application.wallet.queries import WalletQueries
from penpay.bootstrap import Core, Payments
from penpay_api.auth import RoleAwareAccessTokens
from penpay_api.context import current_call_or_none
from penpay_api.idempotency import IdempotencyInterceptor
from penpay_api.refusal_throttle import RefusalThrottle
from penpay_api.server import ApiServer, Service
from penpay_api.sessions import SqlSessionCheck
from persistence.auth_store import CODE_TTL, SqlRefreshTokenStore, SqlVerificationCodeStore
from persistence.reconciliation_closing import SqlItemClosings
from persistence.reconciliation_write_off import SqlWriteOffs
from persistence.transaction_stats import SqlTransactionStats
from persistence.wallet_queries import SqlWalletReadModel
from security.notify import DevelopmentNotifier
from security.proxies import TrustedProxies
from workers.bus import MessageBus

if TYPE_CHECKING:
    from penpay_api.services.ops import ConsistencyCheck


class FromSettings(Enum):
    """'Build it from settings' (None means 'none at all'): an enum, so the type checker narrows it."""

    DEFAULT = "from settings"


DEFAULT: Final = FromSettings.DEFAULT


def is_production(core: Core) -> bool:
    return core.settings.app_env == "production"


def api_actor() -> str:
    """Audit actor of the API's units of work: the caller named by the access token."""
    state = current_call_or_none()
    if state is not None and state.principal is not None:
        subject = state.principal.subject
        return subject if subject.startswith("operator:") else f"user:{subject}"
    return "api"


@dataclass
class Api:
    """The built API: its server and the parts tests and `penpay up` reach for."""

    server: ApiServer
    identity: IdentityService
    tokens: RoleAwareAccessTokens
    notifier: Notifier
    wallet: WalletQueries
    payments: Payments | None
    _closers: list[Callable[[], Awaitable[object] | object]] = field(default_factory=list)

    async def serve(self) -> None:
        """Start the server, then keep the start-up heap out of the collector's walks (a daemon's
        start; tests that build an API start its server alone)."""
        from penpay_api.heap import freeze_startup_heap

        await self.server.start()
        freeze_startup_heap()

    async def close(self) -> None:
        await self.server.stop()
        for close in reversed(self._closers):
            result = close()
            if hasattr(result, "__await__"):
                await result


def build_api(
    core: Core,
    *,
    grpc_addr: str | None = None,
    metrics_addr: str | Literal[FromSettings.DEFAULT] | None = DEFAULT,
    tokens: RoleAwareAccessTokens | None = None,
    hasher: PasswordHasher | None = None,
    notifier: Notifier | None = None,
    deriv: DerivAccountGateway | None = None,
    deriv_oauth: DerivOAuth | None = None,
    rate_limiter: RateLimiter | None = None,
    payments: Payments | Literal[FromSettings.DEFAULT] | None = DEFAULT,
    consistency_check: ConsistencyCheck | Literal[FromSettings.DEFAULT] | None = DEFAULT,
    dev_services: bool | None = None,
    extra_services: list[Service] | None = None,
    extra_handlers: list[grpc.GenericRpcHandler] | None = None,
    extra_money_methods: Collection[str] = (),
    bus: MessageBus | None = None,
    fingerprint_key: bytes | None = None,
    deriv_statement: Any = None,
    mpesa_lookups: Any = None,
    mpesa_reversals: Any = None,
) -> Api:
    """The API server with every service, wired to `core` (nothing is started)."""
    from application.review.paybill import PaybillSuspenseReview
    from application.review.paybill_refund import SuspenseRefunds
    from penpay.auth.v1 import auth_pb2_grpc
    from penpay.bootstrap import access_tokens, password_hasher, paybill_deposits
    from penpay.dev.v1 import dev_pb2_grpc
    from penpay.keys.v1 import keys_pb2_grpc
    from penpay.ops.v1 import ops_pb2_grpc
    from penpay.payments.v1 import payments_pb2_grpc
    from penpay.wallet.v1 import wallet_pb2_grpc
    from penpay_api.services import auth, dev, keys, ops, wallet
    from penpay_api.services import payments as payments_service
    from security.rate_limit import rate_limiter_from_url

    s = core.settings
    closers: list[Callable[[], Awaitable[object] | object]] = []

    def unit_of_work() -> IdentityUnitOfWork:
        # SqlUnitOfWork implements the identity unit of work (its users repository is the SQL one).
        return core.unit_of_work(actor=api_actor())

    if tokens is None:
        tokens = access_tokens(s, RoleAwareAccessTokens)
    if hasher is None:
        argon = password_hasher(s)
        closers.append(argon.close)
        hasher = argon
    if deriv is None:
        from deriv_gateway.accounts_client import GatewayDerivAccounts
        from deriv_gateway.channel import gateway_channel

        channel = gateway_channel(s.gateway_addr)
        closers.append(channel.close)
        deriv = GatewayDerivAccounts(channel, timeout=s.gateway_request_timeout + 10)
    if rate_limiter is None:
        limiter = rate_limiter_from_url(s.redis_url, prefix=s.rate_limit_prefix)
        if hasattr(limiter, "aclose"):
            closers.append(limiter.aclose)
        rate_limiter = limiter
    dev_sink = notifier if isinstance(notifier, DevelopmentNotifier) else None
    if notifier is None:
        from penpay.notifiers import build_notifier

        # MissingSecret in production without providers
        notifiers = build_notifier(s, rate_limiter, clock=core.clock)
        closers.append(notifiers.aclose)
        notifier, dev_sink = notifiers.notifier, notifiers.dev_sink
    if is_production(core) and dev_sink is not None:
        raise RuntimeError("the development notifier keeps codes in memory: not in production")
    guard = RateLimitGuard(rate_limiter)
    rest_binding = None
    if deriv_oauth is None and s.deriv_rest_app_id and s.deriv_rest_redirect_uri:
        from deriv_gateway.oauth_binding import DerivOAuthAdapter
        from penpay.production import Part, refuse_development_values

        refuse_development_values(s, Part.DERIV_OAUTH)

        adapter = DerivOAuthAdapter(
            auth_base=s.deriv_rest_oauth_url,
            client_id=s.deriv_rest_app_id,
            redirect_uri=s.deriv_rest_redirect_uri,
            clock=lambda: core.clock.now().timestamp(),
        )
        closers.append(adapter.close)
        deriv_oauth = adapter
    if deriv_oauth is not None:
        from application.identity.deriv_rest import DerivRestBinding

        rest_binding = DerivRestBinding(
            unit_of_work=unit_of_work, oauth=deriv_oauth, deriv=deriv, box=core.pii, clock=core.clock
        )
    identity = IdentityService(
        unit_of_work=unit_of_work,
        hasher=hasher,
        access_tokens=tokens,
        refresh_tokens=SqlRefreshTokenStore(core.engine),
        codes=SqlVerificationCodeStore(core.engine, cipher=core.pii),
        notifier=notifier,
        deriv=deriv,
        rate_limits=guard,
        clock=core.clock,
        rest=rest_binding,
    )

    if payments is DEFAULT:
        from penpay import bootstrap

        policy = CompliancePolicy(
            unit_of_work=unit_of_work,
            stats=SqlTransactionStats(core.engine),
            refresh_kyc=identity.refresh_kyc,
            clock=core.clock,
            rate_limits=guard,
        )
        built = bootstrap.payments(
            core, policy=policy, rest_token=rest_binding.token if rest_binding is not None else None
        )
        closers.append(built.close)
        wired: Payments | None = built
    elif payments is None or isinstance(payments, Payments):
        wired = payments
        if wired is not None and rest_binding is not None:
            # built before this API (penpay up): its REST users' tokens come from the binding built here
            wired.withdrawals.use_rest_tokens(rest_binding.token)
    else:
        raise TypeError(f"payments: bootstrap.Payments, None or DEFAULT, not {type(payments).__name__}")
    if consistency_check is DEFAULT:
        from persistence.consistency.check import check_consistency

        consistency_check = check_consistency

    if deriv_statement is None:
        from deriv_gateway.channel import gateway_channel
        from deriv_gateway.payments_client import GatewayDerivStatement

        statement_channel = gateway_channel(s.gateway_addr)
        closers.append(statement_channel.close)
        deriv_statement = GatewayDerivStatement(statement_channel, timeout=s.gateway_request_timeout + 10)
    if mpesa_lookups is None and wired is not None:
        # Only where this API moves money is M-Pesa configured; without it, the review actions
        # that need M-Pesa's word answer EVIDENCE_UNAVAILABLE.
        from mpesa_adapter.review_lookups import DarajaReviewLookups
        from penpay.bootstrap import callback_inbox, daraja_client, lost_push_reads

        review_daraja = daraja_client(s, closers.append, clock=core.clock)
        mpesa_lookups = DarajaReviewLookups(
            review_daraja,
            core.engine,
            inbox=callback_inbox(core),
            lost_push=lost_push_reads(core, review_daraja),
        )
        if mpesa_reversals is None:
            from mpesa_adapter.reversal import DarajaReversals

            mpesa_reversals = DarajaReversals(review_daraja)
    review = ReviewService(
        unit_of_work=lambda actor: core.unit_of_work(actor=actor),
        deriv_statement=deriv_statement,
        deriv_lookups=deriv_statement,
        mpesa_lookups=mpesa_lookups,
        lost_push_wait=timedelta(seconds=s.review_lost_push_wait),
    )

    wallet_queries = WalletQueries(SqlWalletReadModel(core.engine))
    if bus is None:
        bus = core.message_bus()  # closed by core.close()

    services = [
        Service(
            name=auth.SERVICE_NAME,
            servicer=auth.AuthServicer(
                identity, unit_of_work=unit_of_work, clock=core.clock, code_ttl=CODE_TTL
            ),
            add_to_server=auth_pb2_grpc.add_AuthServiceServicer_to_server,
            public_methods=auth.PUBLIC_METHODS,
            field_aliases=auth.FIELD_ALIASES,
        ),
        Service(
            name=wallet.SERVICE_NAME,
            servicer=wallet.WalletServicer(wallet_queries),
            add_to_server=wallet_pb2_grpc.add_WalletServiceServicer_to_server,
        ),
        Service(
            name=ops.SERVICE_NAME,
            servicer=ops.OpsServicer(
                engine=core.engine,
                bus=bus,
                clock=core.clock,
                consistency_check=consistency_check,
                review=review,
                paybill=PaybillSuspenseReview(
                    unit_of_work=core.unit_of_work,
                    deposits=paybill_deposits(core),
                ),
                # Without M-Pesa configured here, approving a refund says so (ActionNotPossible).
                refunds=SuspenseRefunds(unit_of_work=core.unit_of_work, reversals=mpesa_reversals),
                kyc=KycAttestationReview(unit_of_work=lambda actor: core.unit_of_work(actor=actor)),
                reconciliation_items=ReconciliationItemReview(
                    SqlItemClosings(lambda actor: core.unit_of_work(actor=actor))
                ),
                write_offs=SuspenseWriteOffs(SqlWriteOffs(lambda actor: core.unit_of_work(actor=actor))),
            ),
            add_to_server=ops_pb2_grpc.add_OpsServiceServicer_to_server,
            operator_only=True,
            method_roles=ops.METHOD_ROLES,
            field_aliases=ops.FIELD_ALIASES,
        ),
        Service(
            name=keys.SERVICE_NAME,
            servicer=keys.KeysServicer(tokens),
            add_to_server=keys_pb2_grpc.add_KeysServiceServicer_to_server,
            public_methods=keys.PUBLIC_METHODS,
        ),
    ]
    if wired is not None:
        services.append(
            Service(
                name=payments_service.SERVICE_NAME,
                servicer=payments_service.PaymentsServicer(
                    deposits=wired.deposits,
                    withdrawals=wired.withdrawals,
                    transactions=wired.transactions,
                    paybill=paybill_deposits(core),
                ),
                add_to_server=payments_pb2_grpc.add_PaymentsServiceServicer_to_server,
                money_methods=payments_service.MONEY_METHODS,
                creates_transaction_under_key=payments_service.CREATES_TRANSACTION_UNDER_KEY,
                answered_by_use_case=payments_service.ANSWERED_BY_USE_CASE,
                claimed_by_use_case=payments_service.CLAIMED_BY_USE_CASE,
                sessions_checked_by_use_case=payments_service.SESSIONS_CHECKED_BY_USE_CASE,
                field_aliases=payments_service.FIELD_ALIASES,
            )
        )
    if dev_services is None:
        dev_services = not is_production(core) and dev_sink is not None
    if dev_services:
        if is_production(core):
            raise RuntimeError("penpay.dev.v1.DevService is never served in production")
        if dev_sink is None:
            raise RuntimeError("DevService needs the development notifier")
        services.append(
            Service(
                name=dev.SERVICE_NAME,
                servicer=dev.DevServicer(dev_sink, unit_of_work=unit_of_work),
                add_to_server=dev_pb2_grpc.add_DevServiceServicer_to_server,
            )
        )
    services.extend(extra_services or ())

    if fingerprint_key is None:
        fingerprint_key = core.pii.derive_key("penpay-api idempotency request fingerprint")
    idempotency = IdempotencyInterceptor(
        store=core.idempotency,
        engine=core.engine,
        clock=core.clock,
        money_methods=extra_money_methods,
        fingerprint_key=fingerprint_key,
    )
    # One access.refused row per (caller, method, reason) a minute, with the count of the others.
    refusal_audit = RefusalThrottle(_refusal_audit(core), core.clock)
    closers.append(refusal_audit.flush)
    server = ApiServer(
        services,
        tokens=tokens,
        idempotency=idempotency,
        clock=core.clock,
        grpc_addr=grpc_addr or s.grpc_addr,
        metrics_addr=s.metrics_addr if metrics_addr is DEFAULT else metrics_addr,
        trusted_proxies=TrustedProxies.parse(s.trusted_proxies),
        extra_handlers=extra_handlers or (),
        sessions=SqlSessionCheck(core.engine),
        refusal_audit=refusal_audit,
    )
    return Api(
        server=server,
        identity=identity,
        tokens=tokens,
        notifier=notifier,
        wallet=wallet_queries,
        payments=wired,
        _closers=closers,
    )


def _refusal_audit(core: Any) -> Callable[[str, str, str, Mapping[str, Any]], Awaitable[None]]:
    """A staff call refused for its roles, as an `access.refused` record of the audit chain."""

    async def record(actor: str, method: str, reason: str, details: Mapping[str, Any]) -> None:
        async with core.unit_of_work(actor=actor) as uow:
            uow.audit(
                action="access.refused",
                subject_type="rpc",
                subject_id=method[:64],
                details={"reason": reason, **details},
            )
            await uow.commit()

    return record


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def service_names(api: Api) -> Mapping[str, Service]:
    return {s.name: s for s in api.server.services}
