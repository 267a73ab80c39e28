"""penpay.ops.v1.OpsService: reports for operators (the operator role is checked by the
authorisation interceptor before any of this runs)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.shared.clock import Clock
from domain.shared.errors import InvalidValue
from penpay.ops.v1 import ops_pb2 as pb
from penpay.ops.v1 import ops_pb2_grpc as pb_grpc
from penpay_api.services._common import money_of, timestamp
from persistence.ops_queries import outbox_stats, reconciliation_report
from workers.bus import MessageBus

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OpsService"].full_name
DEFAULT_REPLAY_LIMIT = 100
MAX_REPLAY_LIMIT = 1000
DEAD_LETTER_SCAN = 100_000
DEFAULT_STALE_AFTER = timedelta(hours=1)
MAX_STALE_AFTER_SECONDS = 10 * 366 * 24 * 3600  # ten years

# (engine, now=, stale_after=) -> persistence.consistency.ConsistencyReport
ConsistencyCheck = Callable[..., Awaitable[Any]]


class OpsServicer(pb_grpc.OpsServiceServicer):
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        bus: MessageBus,
        clock: Clock,
        consistency_check: ConsistencyCheck | None = None,
    ) -> None:
        self._engine = engine
        self._bus = bus
        self._clock = clock
        self._check = consistency_check

    async def GetReconciliationReport(
        self, request: pb.GetReconciliationReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetReconciliationReportResponse:
        report = await reconciliation_report(self._engine)
        return pb.GetReconciliationReportResponse(
            generated_at=timestamp(self._clock.now()),
            account_totals=[
                pb.AccountKindTotal(
                    kind=k.kind, balance=money_of(k.balance_cents, k.currency), account_count=k.account_count
                )
                for k in report.kinds
            ],
            currency_totals=[
                pb.CurrencyTotals(
                    currency=c.currency,
                    debits_cents=c.debits_cents,
                    credits_cents=c.credits_cents,
                    balanced=c.balanced,
                )
                for c in report.currencies
            ],
            transactions=[
                pb.TransactionStatusCount(
                    type=s.type, status=s.status, count=s.count, amount=money_of(s.amount_cents, s.currency)
                )
                for s in report.statuses
            ],
            transactions_needing_attention=report.needing_attention,
            open_mpesa_callback_reviews=report.open_callback_reviews,
        )

    async def GetOutboxStats(
        self, request: pb.GetOutboxStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetOutboxStatsResponse:
        stats = await outbox_stats(self._engine)
        return pb.GetOutboxStatsResponse(
            pending=stats.pending,
            published=stats.published,
            pending_with_failed_attempts=stats.pending_with_failed_attempts,
            max_publish_attempts=stats.max_publish_attempts,
            oldest_pending_occurred_at=timestamp(stats.oldest_pending_occurred_at),
            pending_by_stream=stats.pending_by_stream,
        )

    async def GetDeadLetterStats(
        self, request: pb.GetDeadLetterStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDeadLetterStatsResponse:
        streams = []
        for stream in await self._bus.dead_letter_streams():
            letters = await self._bus.list_dead(stream, count=DEAD_LETTER_SCAN)
            if not letters:
                continue
            streams.append(
                pb.DeadLetterStreamStats(
                    stream=stream,
                    count=len(letters),
                    by_group=dict(Counter(letter.group for letter in letters)),
                    by_event_type=dict(Counter(letter.fields.get("event_type", "?") for letter in letters)),
                )
            )
        return pb.GetDeadLetterStatsResponse(streams=streams, total=sum(s.count for s in streams))

    async def ReplayDeadLetters(
        self, request: pb.ReplayDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayDeadLettersResponse:
        if request.limit < 0 or request.limit > MAX_REPLAY_LIMIT:
            raise InvalidValue(f"limit must be 1 to {MAX_REPLAY_LIMIT}", field="limit")
        if request.dead_letter_id and not request.stream:
            raise InvalidValue("a dead_letter_id needs its stream", field="stream")
        limit = request.limit or DEFAULT_REPLAY_LIMIT
        streams = [request.stream] if request.stream else await self._bus.dead_letter_streams()
        replayed: list[pb.ReplayedDeadLetter] = []
        for stream in streams:
            for letter in await self._bus.list_dead(stream, count=DEAD_LETTER_SCAN):
                if len(replayed) >= limit:
                    break
                if request.dead_letter_id and letter.dead_id != request.dead_letter_id:
                    continue
                new_id = await self._bus.replay_dead(stream, letter.dead_id)
                if new_id is not None:
                    replayed.append(
                        pb.ReplayedDeadLetter(
                            stream=stream, dead_letter_id=letter.dead_id, new_message_id=new_id
                        )
                    )
        if request.dead_letter_id and not replayed:
            raise InvalidValue("no such dead letter on that stream", field="dead_letter_id")
        return pb.ReplayDeadLettersResponse(replayed=replayed)

    async def RunConsistencyCheck(
        self, request: pb.RunConsistencyCheckRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunConsistencyCheckResponse:
        if self._check is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the consistency check is not available")
        assert self._check is not None
        if not 0 <= request.stale_after_seconds <= MAX_STALE_AFTER_SECONDS:
            # The upper bound also keeps timedelta (and now - stale_after) from overflowing.
            raise InvalidValue(
                f"stale_after_seconds must be 0 to {MAX_STALE_AFTER_SECONDS}", field="stale_after_seconds"
            )
        stale_after = (
            timedelta(seconds=request.stale_after_seconds)
            if request.stale_after_seconds
            else DEFAULT_STALE_AFTER
        )
        now = self._clock.now()
        report = await self._check(self._engine, now=now, stale_after=stale_after)
        problems = [
            pb.ConsistencyProblem(check=v.code, subject_id=v.transaction_id or "", detail=v.message)
            for v in report.violations
        ]
        problems.extend(
            pb.ConsistencyProblem(
                check="UNRESOLVED_TRANSACTION",
                subject_id=u.transaction_id,
                detail=f"{u.type} {u.status} since {u.created_at.isoformat()}",
            )
            for u in report.unresolved
        )
        warnings = [
            pb.ConsistencyProblem(check=w.code, subject_id=w.transaction_id or "", detail=w.message)
            for w in report.warnings
        ]
        return pb.RunConsistencyCheckResponse(
            checked_at=timestamp(report.checked_at),
            consistent=bool(report.ok),
            problems=problems,
            warnings=warnings,
        )
