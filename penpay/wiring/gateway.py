"""The Deriv gateway's wiring: the daemon and its configuration from the settings (one place for
`penpay gateway`, the embedded stack, the cluster's processes and the saga tests). The gateway
package itself reads no settings."""

from __future__ import annotations

from typing import Any

from deriv_gateway.config import GatewayConfig, usd_cents
from deriv_gateway.server import GatewayServer
from domain.shared.clock import Clock, SystemClock
from penpay.production import Part, refuse_development_values
from penpay.settings import Settings


def gateway_config(settings: Settings, **overrides: Any) -> GatewayConfig:
    """The settings with the command line's (or the embedded stack's) overrides applied; production
    refuses development values of what the process will actually use."""
    names = {"ws_url": "deriv_ws_url", "database_url": "database_url"}
    used = {names[key]: value for key, value in overrides.items() if key in names}
    refuse_development_values(settings.model_copy(update=used), Part.DERIV, Part.DATABASE)
    config = GatewayConfig(
        ws_url=settings.deriv_ws_url,
        app_id=settings.deriv_app_id,
        agent_token=settings.deriv_agent_token.get_secret_value(),
        grpc_addr=settings.gateway_addr,
        redis_url=settings.redis_url,
        database_url=settings.database_url,
        lease_key=settings.gateway_lease_key,
        lease_ttl=settings.gateway_lease_ttl,
        lease_retry=settings.gateway_lease_retry,
        request_timeout=settings.gateway_request_timeout,
        unknown_settle=settings.gateway_unknown_settle,
        rest_base_url=settings.deriv_rest_base_url,
        rest_app_id=settings.deriv_rest_app_id,
        rest_agent_token=settings.deriv_rest_agent_token.get_secret_value(),
        rest_per_minute=settings.deriv_rest_per_minute,
        transfer_min_cents=usd_cents(settings.deriv_transfer_min_usd),
        transfer_max_cents=usd_cents(settings.deriv_transfer_max_usd),
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def build_gateway(settings: Settings, *, clock: Clock | None = None, **overrides: Any) -> GatewayServer:
    """The gateway daemon (not started), configured as `gateway_config` says, on `clock` (the
    composition root's `core.clock` where there is a core; the system clock for the daemon alone)."""
    return GatewayServer(gateway_config(settings, **overrides), clock=clock or SystemClock())
