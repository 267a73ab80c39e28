"""The event loop every `penpay` process runs on: `run(main())` instead of `asyncio.run(main())`.

uvloop by default (PENPAY_EVENT_LOOP): libuv and compiled callbacks, where the standard library's
loop spends its time in Python; a saturated saga worker spent about 29% of its active time in the
loop itself (issue 19). PENPAY_EVENT_LOOP=asyncio runs the standard loop, and so does a platform
uvloop is not built for (Windows): nothing in PenPay depends on which loop runs it.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")
EventLoopName = Literal["uvloop", "asyncio"]


def loop_factory(name: EventLoopName | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the loop `name` names (None: the settings' choice); None for the standard one."""
    if name is None:
        name = _configured()
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # not built for this platform (Windows): the standard loop does the same work
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], *, name: EventLoopName | None = None) -> T:
    """`asyncio.run(main)` on the chosen loop (asyncio.Runner: the same shutdown of tasks,
    async generators and the default executor)."""
    _collect_less()
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(main)


def _collect_less() -> None:
    """What the imports built (modules, SQLAlchemy's tables, protobuf descriptors) lives as long
    as the process: frozen, no collection walks it again; and the youngest generation collected
    every 20,000 allocations instead of 700 (a unit of work allocates thousands of short-lived,
    acyclic objects, which reference counting frees anyway)."""
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def _configured() -> EventLoopName:
    from penpay.settings import get_settings

    try:
        return get_settings().event_loop
    except Exception:  # a bad setting: the command reads the settings again and says what is wrong
        return "uvloop"
