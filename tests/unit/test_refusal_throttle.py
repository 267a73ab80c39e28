"""RefusalThrottle's edges: a row that could not be written is not lost from the count, and the
number of keys held is bounded without dropping a refusal. A fixed clock moved by hand."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.shared.clock import FixedClock
from penpay_api.refusal_throttle import RefusalThrottle

pytestmark = pytest.mark.unit

START = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


class Chain:
    """Stands for the audit chain: keeps what would be written, fails when told to."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, dict[str, Any]]] = []
        self.failing = False

    async def __call__(self, actor: str, method: str, reason: str, details: Mapping[str, Any]) -> None:
        if self.failing:
            raise RuntimeError("the database is away")
        self.rows.append((actor, method, reason, dict(details)))


async def test_a_refusal_whose_row_failed_is_counted_in_the_next_row() -> None:
    clock, chain = FixedClock(START), Chain()
    throttle = RefusalThrottle(chain, clock, window=timedelta(seconds=60))
    chain.failing = True
    with pytest.raises(RuntimeError):
        await throttle("operator:vera", "/m", "ROLE_REQUIRED", {"method": "/m"})
    chain.failing = False
    await throttle("operator:vera", "/m", "ROLE_REQUIRED", {"method": "/m"})  # at once, not a minute later
    assert [row[3]["suppressed_before"] for row in chain.rows] == [1]


async def test_keys_are_bounded_and_a_new_key_past_the_bound_is_audited_every_time() -> None:
    clock, chain = FixedClock(START), Chain()
    throttle = RefusalThrottle(chain, clock, window=timedelta(seconds=60), max_keys=2)
    for actor in ("a", "b", "c", "c"):
        await throttle(actor, "/m", "ROLE_REQUIRED", {})
    assert [row[0] for row in chain.rows] == ["a", "b", "c", "c"]  # c has no window: every call is a row
    clock.advance(timedelta(seconds=61))  # a and b ended with nothing counted: dropped for c
    await throttle("c", "/m", "ROLE_REQUIRED", {})
    await throttle("c", "/m", "ROLE_REQUIRED", {})
    assert [row[0] for row in chain.rows] == ["a", "b", "c", "c", "c"]
    await throttle.flush()
    assert chain.rows[-1][0] == "c" and chain.rows[-1][3]["suppressed_before"] == 1
