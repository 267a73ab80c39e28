"""SqlUnitOfWork: one database transaction per business operation.

Commits, together or not at all: the aggregates the repositories touched, their new
domain events as outbox rows (`domain_events`), audit records for every financial event (written
by the database from the event's outbox row, migration 0028) and for explicit audit records, and
idempotency records. Nothing is published before commit: the outbox relay only ever sees
committed rows.

Audit records are committed to `audit_pending` (one INSERT of all of them) and chained into
`audit_logs` (persistence/audit.py): on MariaDB by the audit sealer (persistence/audit_sealer.py),
in the background sealer when the process wiring says so, else right after the commit, once this
unit of work's connection is back in the pool (leaving the `async with` waits for it), so concurrent
commits never queue on the chain head; on SQLite, whose transaction holds the database's write lock
anyway, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from application.unit_of_work import EventSource
from domain.shared.clock import Clock, SystemClock
from domain.shared.events import DomainEvent
from domain.shared.json_value import JSONValue
from persistence import audit, outbox
from persistence.audit_sealer import sealer_for
from persistence.callback_reviews import SqlCallbackReviews
from persistence.engine import connect
from persistence.idempotency_store import complete
from persistence.kyc_attestations import SqlKycAttestations
from persistence.ledger_repository import SqlLedgerRepository
from persistence.paybill_store import SqlPaybillStore
from persistence.payment_requests import SqlPaymentRequests
from persistence.review_actions import SqlReviewActions
from persistence.saga_steps import SqlSagaSteps
from persistence.transaction_repository import SqlTransactionRepository
from persistence.user_repository import SqlUserRepository
from security.pii import PiiCipher


class SqlUnitOfWork:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Clock | None = None,
        actor: str = "system",
        cipher: PiiCipher | None = None,
        wait_for_seal: bool = True,
        seal_here: bool = True,
    ) -> None:
        self._engine = engine
        # False: the audit seal runs in the background (AuditSealer.seal_soon); the caller returns
        # without waiting for its records to be chained (they are committed either way).
        self._wait_for_seal = wait_for_seal
        # False: no seal from this unit of work; its records wait, committed in audit_pending, for
        # the next seal of any process, which chains every pending record. For a process whose
        # records are always followed by another's sealed commit (an M-Pesa callback, then the
        # saga's): one seal pass per callback was more statements than the callback itself.
        self._seal_here = seal_here
        # Personal data is encrypted with the configured keys (the composition root's); None: the
        # development key (security.pii.default_cipher), for tests without one.
        self._cipher = cipher
        self.clock: Clock = clock or SystemClock()
        self.actor = actor
        self._connection: AsyncConnection | None = None
        self._events: list[DomainEvent] = []
        self._sources: list[EventSource] = []
        self._audit_records: list[audit.AuditRecord] = []
        self._committed = False
        self._to_seal = False
        # SQLite: one writer at a time already, so the records are chained in the transaction itself.
        self._seal_in_transaction = engine.dialect.name == "sqlite"

    @property
    def connection(self) -> AsyncConnection:
        if self._connection is None:
            raise RuntimeError("the unit of work is not open: use `async with uow:`")
        return self._connection

    async def __aenter__(self) -> Self:
        # No explicit begin(): the first statement begins the transaction (SQLAlchemy's autobegin,
        # in the greenlet that runs it); begin() was one greenlet switch more per unit of work.
        self._connection = await connect(self._engine).start()
        self._events, self._sources, self._audit_records = [], [], []
        self._committed = False
        self._to_seal = False
        self.ledger = SqlLedgerRepository(self._connection, self.clock)
        self.transactions = SqlTransactionRepository(self._connection, self.track)
        self.users = SqlUserRepository(self._connection, self.track, self._cipher, self.clock)
        self.saga_steps = SqlSagaSteps(self._connection, self.transactions)
        self.review_actions = SqlReviewActions(self._connection)
        self.paybill = SqlPaybillStore(self._connection)
        self.kyc_attestations = SqlKycAttestations(self._connection, self._cipher)
        self.callback_reviews = SqlCallbackReviews(self._connection)
        self.requests = SqlPaymentRequests(self._connection, self._cipher)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if not self._committed:
                await connection.rollback()
        finally:
            await connection.close()
        if self._to_seal:
            self._to_seal = False
            await sealer_for(self._engine).after_commit(wait=self._wait_for_seal)

    # --- what the operation hands to the unit of work --------------------------------

    def track(self, source: EventSource) -> None:
        """An aggregate whose new events are collected at commit."""
        if all(source is not seen for seen in self._sources):
            self._sources.append(source)

    def record_events(self, events: Iterable[DomainEvent]) -> None:
        """Events not held by a tracked aggregate (e.g. BalanceChanged from a posting)."""
        self._events.extend(events)

    def audit(
        self, *, action: str, subject_type: str, subject_id: str, details: dict[str, JSONValue] | None = None
    ) -> None:
        self._audit_records.append(
            audit.AuditRecord(
                occurred_at=self.clock.now(),
                actor=self.actor,
                action=action,
                subject_type=subject_type,
                subject_id=subject_id,
                details=details or {},
            )
        )

    async def complete_idempotency_key(
        self,
        *,
        scope: str,
        key_hash: str,
        response_code: int,
        response_body: bytes,
        transaction_id: Any = None,
    ) -> None:
        await complete(
            self.connection,
            scope=scope,
            key_hash=key_hash,
            response_code=response_code,
            response_body=response_body,
            now=self.clock.now(),
            transaction_id=transaction_id,
        )

    # --- the transaction ----------------------------------------------------------------

    async def commit(self) -> None:
        connection = self.connection
        events = [*self._events]
        for source in self._sources:
            events.extend(source.pull_events())
        records = self._audit_records
        # A financial event's audit record is written by the database with its outbox row.
        audited = len(records) + sum(1 for e in events if audit.is_financial(e))
        await outbox.write_events(connection, events, self.actor)
        await audit.write_pending(connection, records)
        if audited and self._seal_in_transaction:
            await audit.seal_pending(connection, batch_size=max(1000, audited))
        await self.ledger.write_last()  # the floats' row locks, held from here to the COMMIT only
        await connection.commit()
        self._committed = True
        self._to_seal = self._to_seal or (bool(audited) and self._seal_here and not self._seal_in_transaction)
        self._events, self._sources, self._audit_records = [], [], []

    async def rollback(self) -> None:
        await self.connection.rollback()
