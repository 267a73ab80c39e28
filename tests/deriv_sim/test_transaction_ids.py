"""Transaction ids: apart between runs (PenPay's database keeps them unique), monotonic within a run."""

from __future__ import annotations

import aiohttp
import pytest

from deriv_gateway.simulator import DerivSimulator
from deriv_gateway.simulator.books import LANE_WIDTH, first_transaction_id
from tests.deriv_sim.helpers import ConnectClient, MakeSim

from .helpers import AGENT_TOKEN, ALICE, control_for

pytestmark = pytest.mark.integration


def transfer(description: str) -> dict[str, object]:
    return {
        "paymentagent_transfer": 1,
        "amount": 10,
        "currency": "USD",
        "transfer_to": ALICE,
        "description": description,
    }


async def _ids(
    sim: DerivSimulator, connect_client: ConnectClient, http: aiohttp.ClientSession, count: int = 3
) -> list[int]:
    """Debit and credit ids of `count` transfers, in execution order."""
    agent = await connect_client(sim, AGENT_TOKEN)
    for i in range(count):
        reply = await agent.call(transfer(f"run {i}"))
        assert isinstance(reply["transaction_id"], int)
    books = await control_for(sim, http).get("/books/transfers")
    return [i for t in books["transfers"] for i in (t["debit_transaction_id"], t["credit_transaction_id"])]


def test_the_default_start_depends_on_the_seed_and_the_start_time() -> None:
    assert first_transaction_id(1, 1_700_000_000.0) < first_transaction_id(1, 1_700_000_000.001)
    assert first_transaction_id(2, 1_700_000_000.0) - first_transaction_id(1, 1_700_000_000.0) == LANE_WIDTH
    assert first_transaction_id(999, 4_000_000_000.0) < 2**53


async def test_two_runs_with_one_seed_never_share_an_id(
    make_sim: MakeSim, connect_client: ConnectClient, http: aiohttp.ClientSession
) -> None:
    first = await _ids(await make_sim(seed=3), connect_client, http)
    second = await _ids(await make_sim(seed=3), connect_client, http)
    assert first == sorted(first) and second == sorted(second)
    assert len(set(first)) == len(first)
    assert max(first) < min(second)
    # started at the same moment, another seed is a lane apart
    other = await _ids(await make_sim(seed=4), connect_client, http)
    assert not set(other) & (set(first) | set(second))


async def test_an_explicit_start_is_reproducible_and_reset_keeps_ids_monotonic(
    make_sim: MakeSim, connect_client: ConnectClient, http: aiohttp.ClientSession
) -> None:
    fixed = await make_sim(seed=3, transaction_id_start=500)
    assert await _ids(fixed, connect_client, http, 2) == [500, 501, 502, 503]
    await control_for(fixed, http).post("/reset")
    assert await _ids(fixed, connect_client, http, 1) == [500, 501]

    derived = await make_sim(seed=3)
    before = await _ids(derived, connect_client, http, 2)
    await control_for(derived, http).post("/reset")
    after = await _ids(derived, connect_client, http, 2)
    assert min(after) > max(before)
