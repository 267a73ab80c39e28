"""The unit-of-work port: what use cases need from a transaction, whatever stores it."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Protocol, Self

from domain.shared.clock import Clock
from domain.shared.events import DomainEvent
from domain.shared.json_value import JSONValue
from domain.wallet.ports import LedgerRepository


class EventSource(Protocol):
    def pull_events(self) -> list[DomainEvent]: ...


class UnitOfWork(Protocol):
    @property
    def clock(self) -> Clock: ...
    @property
    def ledger(self) -> LedgerRepository: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def track(self, source: EventSource) -> None: ...

    def record_events(self, events: Iterable[DomainEvent]) -> None: ...

    def audit(
        self, *, action: str, subject_type: str, subject_id: str, details: dict[str, JSONValue] | None = None
    ) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...
