"""The composition root's wiring decides what each daemon runs from the settings."""

from __future__ import annotations

import pytest

from penpay.bootstrap import bootstrap
from penpay.settings import Settings
from penpay.wiring.auditor import build_audit_worker
from penpay.wiring.saga_worker import build_saga_worker
from workers.float_low import FLOAT_LOW_GROUP
from workers.notifications import NOTICE_GROUP
from workers.sagas import SAGA_GROUP

pytestmark = pytest.mark.integration


async def test_without_redis_the_saga_worker_also_relays_and_sends_the_notices(sqlite_url: str) -> None:
    # The in-process bus is this process's alone: nobody else could read what its relay publishes.
    settings = Settings(_env_file=None, app_env="testing", database_url=sqlite_url, redis_url=None)  # type: ignore[call-arg]
    core = bootstrap(settings)
    worker = build_saga_worker(core)
    try:
        assert worker.relay is not None and worker.sweeper is not None
        groups = sorted(consumer.group for consumer in worker.consumers)
        assert groups == sorted([SAGA_GROUP, NOTICE_GROUP, FLOAT_LOW_GROUP])
    finally:
        await worker.close()
        await core.close()


async def test_with_redis_the_saga_worker_only_wakes_and_sweeps_the_sagas(
    mariadb_url: str, redis_url: str, key_prefix: str
) -> None:
    settings = Settings(  # type: ignore[call-arg]  # _env_file: pydantic-settings' init option
        _env_file=None, app_env="testing", database_url=mariadb_url, redis_url=redis_url
    )
    core = bootstrap(settings)
    worker = build_saga_worker(core, stream_prefix=key_prefix, sweep=False)
    auditor = build_audit_worker(core, stream_prefix=key_prefix, ask_mpesa_balance=False)
    try:
        assert worker.relay is None and worker.sweeper is None
        assert [consumer.group for consumer in worker.consumers] == [SAGA_GROUP]
        # FloatLow alerts: the audit worker's with Redis, the saga worker's without.
        assert [consumer.group for consumer in auditor.consumers] == [FLOAT_LOW_GROUP]
    finally:
        await auditor.close()
        await worker.close()
        await core.close()
