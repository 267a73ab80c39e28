"""A bound on the `access.refused` audit rows a caller can make.

A staff (or user) token calling a method its roles do not allow is refused and audited
(penpay_api.interceptors.AuthorisationInterceptor). Unbounded, a token hammering a forbidden RPC
writes one hash-chained audit row per call: the chain grows at the caller's pace and every row is a
database transaction. Here the first refusal of a (principal, method, reason) is recorded at once,
as before, and opens a window; the refusals of the same key inside the window are only counted.
The next refusal after the window is recorded with that count (`suppressed_before`), so the chain
keeps the first refusal of every burst and the number of the others. Counts still held when the
API stops are written by `flush()`.

Memory is bounded: windows that ended are dropped; when `max_keys` windows are still open, a new
key is audited call by call (never silently dropped).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain.shared.clock import Clock
from penpay_api.interceptors import RefusalAudit

DEFAULT_WINDOW = timedelta(minutes=1)
DEFAULT_MAX_KEYS = 10_000

_Key = tuple[str, str, str]


@dataclass(slots=True)
class _Window:
    until: datetime
    suppressed: int = 0  # refusals of this key since its last row, not recorded on their own
    details: Mapping[str, Any] | None = None  # the first refusal's, for the flush


class RefusalThrottle:
    """A RefusalAudit that records at most one row per key and window, with the count of the rest."""

    def __init__(
        self,
        record: RefusalAudit,
        clock: Clock,
        *,
        window: timedelta = DEFAULT_WINDOW,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if window <= timedelta(0) or max_keys < 1:
            raise ValueError("the window is positive and at least one key is kept")
        self._record = record
        self._clock = clock
        self._window = window
        self._max_keys = max_keys
        self._windows: dict[_Key, _Window] = {}

    async def __call__(self, actor: str, method: str, reason: str, details: Mapping[str, Any]) -> None:
        now = self._clock.now()
        key = (actor, method, reason)
        open_ = self._windows.get(key)
        if open_ is not None and now < open_.until:
            open_.suppressed += 1
            return
        carried = open_.suppressed if open_ is not None else 0
        if open_ is None and len(self._windows) >= self._max_keys:
            self._drop_ended(now)
        if open_ is not None or len(self._windows) < self._max_keys:
            # Opened before the write, so calls arriving while it is written are counted in it.
            self._windows[key] = _Window(until=now + self._window, details=details)
        try:
            await self._record(actor, method, reason, self._counted(details, carried))
        except BaseException:
            # Not recorded: the next refusal of this key is written at once and counts this one.
            held = self._windows.get(key)
            if held is not None or len(self._windows) < self._max_keys:
                self._windows[key] = _Window(
                    until=now, suppressed=carried + 1 + (held.suppressed if held is not None else 0)
                )
            raise

    async def flush(self) -> None:
        """Record the counts still held (the API is stopping): one row per key that has one."""
        held, self._windows = self._windows, {}
        for (actor, method, reason), window in held.items():
            if window.suppressed:
                details = {**(window.details or {}), "flushed": True}
                await self._record(actor, method, reason, self._counted(details, window.suppressed))

    def _counted(self, details: Mapping[str, Any], suppressed: int) -> dict[str, Any]:
        return {
            **details,
            "suppressed_before": suppressed,
            "window_seconds": int(self._window.total_seconds()),
        }

    def _drop_ended(self, now: datetime) -> None:
        for key in [k for k, w in self._windows.items() if w.until <= now and not w.suppressed]:
            del self._windows[key]
