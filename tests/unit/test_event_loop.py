"""penpay.event_loop.run: the loop every process runs on, and the collector it sets up first."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from penpay import event_loop

pytestmark = pytest.mark.unit


@pytest.fixture
def collector() -> Iterator[None]:
    """The test process's collector as it was, after run() changed it."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_run_freezes_what_the_imports_built_and_collects_the_young_less_often(collector: None) -> None:
    async def loop_kind() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert event_loop.run(loop_kind(), name="uvloop").startswith("uvloop")
    assert gc.get_freeze_count() > 0  # the modules' objects are out of every collection
    assert gc.get_threshold()[0] == 20_000


def test_the_standard_loop_on_request(collector: None) -> None:
    async def loop_kind() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert event_loop.run(loop_kind(), name="asyncio").startswith("asyncio")
