"""Time for the simulator: Daraja stamps everything in Nairobi time (EAT, UTC+3)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

EAT = timezone(timedelta(hours=3), "EAT")


class Clock:
    """Wall time (injectable, so ids can be reproduced) and monotonic time (for expiry and rate limits)."""

    def __init__(self, wall: Callable[[], datetime] | None = None) -> None:
        self._wall = wall

    def now(self) -> datetime:
        value = self._wall() if self._wall is not None else datetime.now(UTC)
        if value.tzinfo is None:
            value = value.replace(tzinfo=EAT)
        return value.astimezone(EAT)

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()


def compact(ts: datetime) -> str:
    """`YYYYMMDDHHmmss`, the STK Timestamp / TransactionDate / FinalisedTime form."""
    return ts.astimezone(EAT).strftime("%Y%m%d%H%M%S")


def dotted(ts: datetime) -> str:
    """`DD.MM.YYYY HH:mm:ss`, the B2C TransactionCompletedDateTime form."""
    return ts.astimezone(EAT).strftime("%d.%m.%Y %H:%M:%S")
