"""Time as a dependency, so the domain never reads a global clock it cannot control."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from domain.shared.errors import NaiveDatetime


def require_utc(moment: datetime, field: str = "timestamp") -> datetime:
    """Return `moment` in UTC; naive datetimes are refused rather than guessed."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise NaiveDatetime(f"{field} must be timezone-aware", field=field)
    return moment.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return utc_now()


class FixedClock:
    """A clock for tests: stands still until told to move."""

    def __init__(self, at: datetime) -> None:
        self._now = require_utc(at)

    def now(self) -> datetime:
        return self._now

    def set(self, at: datetime) -> None:
        self._now = require_utc(at)

    def advance(self, delta: timedelta) -> datetime:
        self._now = self._now + delta
        return self._now
