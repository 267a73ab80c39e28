"""Time for tests: a stepping clock to inject, and the one place a test may read the wall clock.

Tests take "now" from a clock they inject (FixedClock, SteppingClock) or a fixed instant, so no
result depends on when the suite runs. The exception is a test that drives code which stamps with
the system clock and cannot be handed another: the cluster and demo processes, the `penpay`
command run as a subprocess, UUIDv7 ids. Such a test must compare against that same clock, and it
reads it through `the_processes_clock` so tests/architecture/test_test_clocks.py can allow exactly
this one reading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.shared.clock import require_utc


def the_processes_clock() -> datetime:
    """The system clock, read as the processes under test read it (UTC). Only for comparing with
    stamps made by code that cannot take an injected clock; everything else injects one."""
    return datetime.now(UTC)


class SteppingClock:
    """A clock (domain.shared.clock.Clock) that moves `step` forward on every reading, from a fixed
    instant: as reproducible as FixedClock, yet two readings never agree, so rows still order by
    their stamps and a test can tell a stamp kept from one taken again."""

    def __init__(self, start: datetime, step: timedelta = timedelta(milliseconds=1)) -> None:
        self._next = require_utc(start)
        self._step = step

    def now(self) -> datetime:
        moment, self._next = self._next, self._next + self._step
        return moment
