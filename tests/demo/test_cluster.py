"""The demo journey on the production topology: every process separate (`penpay api`, `http`,
`gateway` with a standby, `relay`, two `worker saga`, `callbacks`, both simulators) on MariaDB +
Redis, as docker-compose.yml runs them. Then the same journey again after the gateway leader and
a worker were SIGKILLed: the clients follow the standby and nothing is lost or paid twice.

Every process runs at DEBUG, and the last test reads every line they logged for the secrets the
journeys handled (tokens, passwords, codes, phones) and the cluster's own (agent token, Daraja
credentials, callback secret)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from persistence.consistency.check import check_consistency
from persistence.engine import create_engine
from proving.cluster import Cluster, ClusterConfig
from proving.demo import Endpoints, JourneyOptions, run_journey
from proving.demo.journey import JourneyResult
from proving.simulator_books import fetch_simulator_books
from tests.clocks import the_processes_clock
from tests.conftest import REDIS_URL
from tests.databases import create_mysql_database, drop_mysql_database
from tests.demo.log_secrets import find_leaks

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

OPTIONS = JourneyOptions(wait_timeout=60)
JOURNEYS: list[JourneyResult] = []  # what this module's journeys handled, for the log search
CLUSTER_SECRETS = (
    "PENPAY_DERIV_AGENT_TOKEN",
    "PENPAY_MPESA_CONSUMER_SECRET",
    "PENPAY_MPESA_PASSKEY",
    "PENPAY_MPESA_INITIATOR_PASSWORD",
    "PENPAY_MPESA_CALLBACK_SECRET",
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    name, url = create_mysql_database(migrated=False)  # `penpay migrate` is the cluster's first step
    try:
        workdir: Path = tmp_path_factory.mktemp("cluster")
        config = ClusterConfig(
            database_url=url,
            redis_url=REDIS_URL,
            workdir=workdir,
            standby_gateway=True,
            log_level="DEBUG",
            sms_simulator=True,
        )
        async with Cluster(config) as running:
            yield running
    finally:
        drop_mysql_database(name)


def endpoints(cluster: Cluster) -> Endpoints:
    a = cluster.addresses
    return Endpoints(
        bridge_url=a["http"], deriv_control_url=a["deriv_control"], mpesa_url=a["mpesa"], sms_url=a["sms"]
    )


async def assert_consistent(cluster: Cluster) -> None:
    books = await fetch_simulator_books(
        deriv_control_url=cluster.addresses["deriv_control"], mpesa_control_url=cluster.addresses["mpesa"]
    )
    engine = create_engine(cluster.config.database_url, pool_size=1)
    try:
        # The cluster's processes stamp with the system clock: "stale" is judged on it too.
        report = await check_consistency(
            engine, now=the_processes_clock(), stale_after=timedelta(minutes=15), books=books
        )
    finally:
        await engine.dispose()
    assert report.ok, report.violations


async def test_the_demo_journey_completes_across_separate_processes(cluster: Cluster) -> None:
    result = await run_journey(endpoints(cluster), OPTIONS, say=lambda _: None)
    JOURNEYS.append(result)
    assert result.deposit is not None and result.deposit.status == "completed"
    assert result.withdrawal is not None and result.withdrawal.status == "completed"
    assert result.deriv_after_deposit_cents - result.deriv_before_cents == result.deposit.converted_cents
    paid = result.mpesa_after_withdrawal.paid_cents - result.mpesa_after_deposit.paid_cents
    assert paid == result.withdrawal.converted_cents
    await assert_consistent(cluster)


async def test_the_journey_survives_a_killed_gateway_leader_and_worker(cluster: Cluster) -> None:
    leader = await cluster.wait_for_gateway_leader(timeout=15)
    await cluster.kill(leader)
    await cluster.kill("worker-1")
    # Until the standby holds the lease, calls needing Deriv answer 503 (a frontend retries them).
    assert await cluster.wait_for_gateway_leader(timeout=15) != leader
    result = await run_journey(endpoints(cluster), OPTIONS, say=lambda _: None)
    JOURNEYS.append(result)
    assert result.deposit is not None and result.deposit.status == "completed"
    assert result.withdrawal is not None and result.withdrawal.status == "completed"
    await assert_consistent(cluster)
    await cluster.restart(leader)
    await cluster.restart("worker-1")


async def test_no_process_logged_a_secret_at_debug(cluster: Cluster) -> None:
    if not JOURNEYS:  # run alone: one journey to read the logs of
        JOURNEYS.append(await run_journey(endpoints(cluster), OPTIONS, say=lambda _: None))
    logs = {name: process.log.read_text(errors="replace") for name, process in cluster.processes.items()}
    assert all(logs.values()), "a process wrote no log at all: is it really at DEBUG?"
    assert sum(text.count('"level": "debug"') for text in logs.values()) > 0
    secrets = {
        "a secret setting": [cluster.env[name] for name in CLUSTER_SECRETS],
        # every secret but the short numeric codes, which are searched as whole tokens below
        "a user's token, password or Deriv token": [
            s for r in JOURNEYS for s in r.handled_secrets if not s.isdigit()
        ],
    }
    codes = [s for r in JOURNEYS for s in r.handled_secrets if s.isdigit()]
    leaks = find_leaks(logs, secrets=secrets, codes=codes, phones=[r.phone for r in JOURNEYS])
    assert not leaks, "\n".join(map(str, leaks))
