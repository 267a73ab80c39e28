"""The composition root picks adapters from settings."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import SecretStr

from penpay.bootstrap import bootstrap, daraja_config
from penpay.settings import Settings
from workers.memory_bus import InProcessBus
from workers.redis_bus import RedisStreamsBus

pytestmark = pytest.mark.integration


async def test_embedded_defaults_give_sqlite_and_the_in_process_bus(sqlite_url: str) -> None:
    core = bootstrap(Settings(database_url=sqlite_url, redis_url=None))
    try:
        assert isinstance(core.message_bus(), InProcessBus)
        async with core.unit_of_work() as uow:
            assert uow.connection.dialect.name == "sqlite"
    finally:
        await core.close()


async def test_a_redis_url_gives_redis_streams_and_mariadb_is_used_when_configured(
    mariadb_url: str, redis_url: str
) -> None:
    core = bootstrap(Settings(database_url=mariadb_url, redis_url=redis_url))
    try:
        assert isinstance(core.message_bus(stream_prefix="penpay-test:"), RedisStreamsBus)
        async with core.unit_of_work() as uow:
            assert uow.connection.dialect.name == "mysql"
    finally:
        await core.close()


async def test_the_audit_sealer_setting_decides_who_seals(mariadb_url: str) -> None:
    from penpay.wiring.auditor import build_audit_worker
    from persistence.audit_sealer import sealed_in_background

    for in_background in (False, True):
        sealer: Literal["background", "inline"] = "background" if in_background else "inline"
        core = bootstrap(Settings(database_url=mariadb_url, redis_url=None, audit_sealer=sealer))
        try:
            assert sealed_in_background(core.engine) is in_background
            # The audit daemon runs the sealer either way (it also chains a dead writer's records).
            worker = build_audit_worker(core, deriv_balance=False, ask_mpesa_balance=False)
            assert worker.sealer is not None and worker.sealer.run in worker.loops
        finally:
            await core.close()


def test_daraja_config_carries_the_secrets_without_showing_them() -> None:
    config = daraja_config(
        Settings(mpesa_consumer_secret=SecretStr("s3cret-consumer"), mpesa_passkey=SecretStr("pass-key-123"))
    )
    assert config.consumer_secret == "s3cret-consumer" and config.passkey == "pass-key-123"
    assert "s3cret-consumer" not in repr(config) and "pass-key-123" not in repr(config)
