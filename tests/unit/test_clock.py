from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.shared.clock import FixedClock, SystemClock, require_utc
from domain.shared.errors import NaiveDatetime

pytestmark = pytest.mark.unit


def test_fixed_clock_stands_still_until_advanced(now: datetime) -> None:
    clock = FixedClock(now)
    assert clock.now() == now
    clock.advance(timedelta(seconds=90))
    assert clock.now() == now + timedelta(seconds=90)


def test_system_clock_is_utc_aware() -> None:
    assert SystemClock().now().tzinfo is UTC


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(NaiveDatetime):
        FixedClock(datetime(2025, 1, 1))


def test_other_timezones_are_converted_to_utc() -> None:
    nairobi = timezone(timedelta(hours=3))
    assert require_utc(datetime(2025, 1, 1, 15, tzinfo=nairobi)) == datetime(2025, 1, 1, 12, tzinfo=UTC)
