"""A refused deposit right after an accepted one, over the bridge on MariaDB: the refusal changes
nothing, and what the accepted deposit wrote (its audit records included) is counted with it.

The API answers a deposit without waiting for its audit seal (persistence.audit_sealer: the records
are committed in audit_pending and chained into audit_logs by a background seal). A fingerprint taken
before that seal had run put the accepted deposit's TransactionCreated / DepositInitiated audit rows
on the next request, a refusal: the schemathesis run saw "POST /v1/deposits -> 400: audit_pending,
audit TransactionCreated, audit DepositInitiated". The fingerprint now waits for background seals.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from domain.shared.clock import FixedClock
from tests.api.conftest import Gateway

from .conftest import Surface, error_shape, serve_surface
from .state import audit_actions_since, fingerprint

pytestmark = pytest.mark.integration


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"http-{secrets.token_hex(8)}"}


@pytest.fixture
async def on_mariadb(fresh_mariadb_url: str, clock: FixedClock, gateway: Gateway) -> AsyncIterator[Surface]:
    """CHECKSUM TABLE (MariaDB) fingerprints the whole database."""
    async with serve_surface(fresh_mariadb_url, clock, gateway) as served:
        yield served


async def test_a_refused_deposit_after_an_accepted_one_changes_nothing(on_mariadb: Surface) -> None:
    surface = on_mariadb
    payer = await surface.payer()
    engine = surface.core.engine
    start = await fingerprint(engine)

    accepted = await payer.browser.post(
        "/v1/deposits", {"amount_cents": "130000", "currency": "KES"}, headers=key()
    )
    assert accepted.status == 200, accepted.json
    between = await fingerprint(engine)
    # The accepted deposit's audit records are chained by the time it is measured.
    audited = await audit_actions_since(engine, start.last_audit_id)
    assert {"TransactionCreated", "DepositInitiated"} <= set(audited), audited

    refused = await payer.browser.post(
        "/v1/deposits", {"amount_cents": "130000", "currency": "XYZ"}, headers=key()
    )

    error_shape(refused, 400, 3)
    after = await fingerprint(engine)
    assert between.changed_tables(after) == []
    assert after.last_audit_id == between.last_audit_id
