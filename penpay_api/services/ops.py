"""penpay.ops.v1.OpsService: reports and the review queue for PenPay's staff (the roles are
checked by the authorisation interceptor, per method by METHOD_ROLES, before any of this runs).
The review actions are application.review.service.ReviewService's; this only translates."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

import grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from application.identity.kyc_attestation import KycAttestation, KycAttestationRefused
from application.identity.kyc_review import KycAttestationReview, ProposedAttestation
from application.reconciliation.closing import ReconciliationItemReview
from application.reconciliation.errors import RunNotFound
from application.reconciliation.rules import ItemClass
from application.reconciliation.write_off import SuspenseWriteOffs
from application.review.paybill import PaybillSuspenseReview
from application.review.paybill_refund import RefundView, SuspenseRefunds
from application.review.ports import Proposal
from application.review.rules import ActionKind, Evidence, ProposalStatus, possible
from application.review.service import ReviewService, view_of
from domain.payments.status import TransactionStatus, TransactionType
from domain.shared.clock import Clock
from domain.shared.errors import InvalidValue
from domain.shared.ids import TransactionId, UserId
from penpay.ops.v1 import ops_pb2 as pb
from penpay.ops.v1 import ops_pb2_grpc as pb_grpc
from penpay_api.auth import APPROVER_ROLE, OPERATOR_ROLE, VIEWER_ROLE
from penpay_api.console.mask import mask_fields, mask_phone, mask_text
from penpay_api.context import current_call
from penpay_api.errors import RpcFailure
from penpay_api.services._common import money, money_of, timestamp
from persistence.auditor_store import AUDIT_CHECKS, recent_verdicts
from persistence.ops_queries import outbox_stats, reconciliation_report
from persistence.reconciliation import SqlReconciliationStore
from persistence.review_queue import QueueItem, review_queue
from persistence.transaction_search import MAX_MATCHES, search_transactions
from workers.bus import MessageBus

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OpsService"].full_name
_READERS = (VIEWER_ROLE, OPERATOR_ROLE, APPROVER_ROLE)
METHOD_ROLES = {
    f"/{SERVICE_NAME}/{name}": roles
    for names, roles in (
        (
            (
                "GetReconciliationReport",
                "GetOutboxStats",
                "GetDeadLetterStats",
                "ListReviewQueue",
                "GetAuditorVerdicts",
                "ListPaybillSuspense",
                "ListReconciliationRuns",
                "ListReconciliationItems",
                "ListKycAttestations",
            ),
            _READERS,
        ),
        (("SearchTransactions",), _READERS),
        (
            (
                "ReplayDeadLetters",
                "RunConsistencyCheck",
                "ProposeReviewAction",
                "ProposePaybillAssignment",
                "ProposePaybillRefund",
                "ProposeKycAttestation",
                "CloseReconciliationItem",
                "ProposeReconciliationWriteOff",
            ),
            (OPERATOR_ROLE,),
        ),
        (
            (
                "ApproveReviewAction",
                "RejectReviewAction",
                "ApprovePaybillAssignment",
                "RejectPaybillAssignment",
                "ApprovePaybillRefund",
                "RejectPaybillRefund",
                "ApproveKycAttestation",
                "RejectKycAttestation",
                "ApproveReconciliationWriteOff",
                "RejectReconciliationWriteOff",
                # the approver compares the identity with the documents; the proposer typed it
                "RevealKycAttestation",
            ),
            (APPROVER_ROLE,),
        ),
        (("RevealCustomerPhone",), (OPERATOR_ROLE, APPROVER_ROLE)),
    )
    for name in names
}
# The attestation's fields, as the request names them (the domain names them without the message).
FIELD_ALIASES = {
    f"/{SERVICE_NAME}/ProposeKycAttestation": {
        name: f"identity.{name}"
        for name in ("first_name", "last_name", "date_of_birth", "residence", "citizen")
    },
}
QUEUE_STATUSES = (TransactionStatus.NEEDS_REVIEW.value, TransactionStatus.OUTCOME_UNKNOWN.value)
DEFAULT_QUEUE_PAGE = 20
MAX_QUEUE_PAGE = 100
DEFAULT_ITEMS_PAGE = 100
MAX_ITEMS_PAGE = 500
_KINDS = {
    pb.REVIEW_ACTION_KIND_RESOLVE_COMPLETED: ActionKind.RESOLVE_COMPLETED,
    pb.REVIEW_ACTION_KIND_REFUND: ActionKind.REFUND,
    pb.REVIEW_ACTION_KIND_FAIL: ActionKind.FAIL,
    pb.REVIEW_ACTION_KIND_RETRY: ActionKind.RETRY,
}
_KIND_PB = {kind: value for value, kind in _KINDS.items()}
_STATUS_PB = {
    ProposalStatus.PROPOSED: pb.REVIEW_ACTION_STATUS_PROPOSED,
    ProposalStatus.EXECUTED: pb.REVIEW_ACTION_STATUS_EXECUTED,
    ProposalStatus.REJECTED: pb.REVIEW_ACTION_STATUS_REJECTED,
    ProposalStatus.REFUSED: pb.REVIEW_ACTION_STATUS_REFUSED,
}
_MPESA_RECEIPT = re.compile(r"[A-Z0-9]{8,20}")
DEFAULT_SEARCH_PAGE = 20
MAX_SEARCH_QUERY = 64
DEFAULT_REPLAY_LIMIT = 100
MAX_REPLAY_LIMIT = 1000
DEAD_LETTER_SCAN = 100_000
DEFAULT_STALE_AFTER = timedelta(hours=1)
MAX_STALE_AFTER_SECONDS = 10 * 366 * 24 * 3600  # ten years
MAX_AUDIT_RUNS = 100
DEFAULT_KYC_PAGE = 50
MAX_KYC_PAGE = 200

# (engine, now=, stale_after=) -> persistence.consistency.report.ConsistencyReport
ConsistencyCheck = Callable[..., Awaitable[Any]]


class OpsServicer(pb_grpc.OpsServiceServicer):
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        bus: MessageBus,
        clock: Clock,
        consistency_check: ConsistencyCheck | None = None,
        review: ReviewService | None = None,
        paybill: PaybillSuspenseReview | None = None,
        refunds: SuspenseRefunds | None = None,
        kyc: KycAttestationReview | None = None,
        reconciliation_items: ReconciliationItemReview | None = None,
        write_offs: SuspenseWriteOffs | None = None,
    ) -> None:
        self._write_offs = write_offs
        self._reconciliation_items = reconciliation_items
        self._paybill = paybill
        self._refunds = refunds
        self._kyc = kyc
        self._engine = engine
        self._bus = bus
        self._clock = clock
        self._check = consistency_check
        self._review = review

    async def ListReconciliationRuns(
        self, request: pb.ListReconciliationRunsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReconciliationRunsResponse:
        if not 0 <= request.page_size <= MAX_QUEUE_PAGE:
            raise InvalidValue(f"page_size must be 0 to {MAX_QUEUE_PAGE}", field="page_size")
        rows = await SqlReconciliationStore(self._engine).runs(request.page_size or DEFAULT_QUEUE_PAGE)
        return pb.ListReconciliationRunsResponse(runs=[_run(row) for row in rows])

    async def ListReconciliationItems(
        self, request: pb.ListReconciliationItemsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReconciliationItemsResponse:
        try:
            run_id = str(uuid.UUID(request.run_id))
        except ValueError:
            raise InvalidValue("run_id is not a run's id", field="run_id") from None
        item_class = request.item_class.strip().upper()
        if item_class and item_class not in ItemClass.__members__:
            raise InvalidValue(f"item_class: one of {', '.join(ItemClass)}", field="item_class")
        if not 0 <= request.page_size <= MAX_ITEMS_PAGE:
            raise InvalidValue(f"page_size must be 0 to {MAX_ITEMS_PAGE}", field="page_size")
        store = SqlReconciliationStore(self._engine)
        if not await store.run_exists(run_id):
            raise RunNotFound("no such reconciliation run")
        size = request.page_size or DEFAULT_ITEMS_PAGE
        rows = await store.items(
            run_id, item_class=item_class or None, after=request.page_token or None, limit=size
        )
        return pb.ListReconciliationItemsResponse(
            items=[_item(row) for row in rows],
            next_page_token=rows[-1].item_key if len(rows) == size else "",
        )

    async def CloseReconciliationItem(
        self, request: pb.CloseReconciliationItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.CloseReconciliationItemResponse:
        if self._reconciliation_items is None:
            raise RpcFailure.build(
                grpc.StatusCode.UNIMPLEMENTED,
                "closing reconciliation items is not handled here",
                reason="UNIMPLEMENTED",
            )
        closed = await self._reconciliation_items.close(
            staff=_staff(), item_key=request.item_key, reason=request.reason
        )
        return pb.CloseReconciliationItemResponse(
            item_key=closed.item_key, review_status=closed.review_status
        )

    def _write_off(self) -> SuspenseWriteOffs:
        if self._write_offs is None:
            raise RpcFailure.build(
                grpc.StatusCode.UNIMPLEMENTED, "write-offs are not handled here", reason="UNIMPLEMENTED"
            )
        return self._write_offs

    async def ProposeReconciliationWriteOff(
        self, request: pb.ProposeReconciliationWriteOffRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProposeReconciliationWriteOffResponse:
        await self._write_off().propose(staff=_staff(), item_key=request.item_key, reason=request.reason)
        return pb.ProposeReconciliationWriteOffResponse()

    async def ApproveReconciliationWriteOff(
        self, request: pb.ApproveReconciliationWriteOffRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApproveReconciliationWriteOffResponse:
        done = await self._write_off().approve(staff=_staff(), item_key=request.item_key)
        return pb.ApproveReconciliationWriteOffResponse(item_key=done.item_key, posting_id=done.posting_id)

    async def RejectReconciliationWriteOff(
        self, request: pb.RejectReconciliationWriteOffRequest, context: grpc.aio.ServicerContext
    ) -> pb.RejectReconciliationWriteOffResponse:
        await self._write_off().reject(staff=_staff(), item_key=request.item_key, reason=request.reason)
        return pb.RejectReconciliationWriteOffResponse()

    async def GetReconciliationReport(
        self, request: pb.GetReconciliationReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetReconciliationReportResponse:
        now = self._clock.now()
        report = await reconciliation_report(self._engine, now=now)
        return pb.GetReconciliationReportResponse(
            generated_at=timestamp(now),
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
                    type=s.type,
                    status=s.status,
                    count=s.count,
                    amount=money_of(s.amount_cents, s.currency),
                    oldest_created_at=timestamp(s.oldest_created_at),
                )
                for s in report.statuses
            ],
            transactions_needing_attention=report.needing_attention,
            completed_by_hour=[
                pb.HourlyCount(start=timestamp(start), count=count)
                for start, count in report.completed_by_hour
            ],
            in_flight_by_hour=[
                pb.HourlyCount(start=timestamp(start), count=count)
                for start, count in report.in_flight_by_hour
            ],
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

    # --- the review queue -----------------------------------------------------------------

    async def SearchTransactions(
        self, request: pb.SearchTransactionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchTransactionsResponse:
        query = request.query.strip()
        if not query or len(query) > MAX_SEARCH_QUERY or not query.isprintable():
            raise InvalidValue(f"query: 1 to {MAX_SEARCH_QUERY} printable characters", field="query")
        if not 0 <= request.page_size <= MAX_MATCHES:
            raise InvalidValue(f"page_size must be 0 to {MAX_MATCHES}", field="page_size")
        found = await search_transactions(self._engine, query, request.page_size or DEFAULT_SEARCH_PAGE)
        return pb.SearchTransactionsResponse(
            matches=[
                pb.TransactionMatch(
                    transaction_id=m.transaction_id,
                    type=m.type,
                    status=m.status,
                    amount=money_of(m.amount_cents, m.currency),
                    matched_on=m.matched_on,
                    phone=mask_phone(m.phone),  # masked by the search already; kept so here too
                    created_at=timestamp(m.created_at),
                )
                for m in found
            ]
        )

    async def ListReviewQueue(
        self, request: pb.ListReviewQueueRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReviewQueueResponse:
        statuses = list(dict.fromkeys(s.strip().upper() for s in request.statuses)) or [QUEUE_STATUSES[0]]
        if any(s not in QUEUE_STATUSES for s in statuses):
            raise InvalidValue(f"statuses: {' or '.join(QUEUE_STATUSES)}", field="statuses")
        type_ = request.type.strip().upper() or None
        if type_ is not None and type_ not in TransactionType.__members__:
            raise InvalidValue("type: DEPOSIT or WITHDRAWAL", field="type")
        if not 0 <= request.page_size <= MAX_QUEUE_PAGE:
            raise InvalidValue(f"page_size must be 0 to {MAX_QUEUE_PAGE}", field="page_size")
        transaction_id = (
            TransactionId.from_str(request.transaction_id, field="transaction_id")
            if request.transaction_id
            else None
        )
        after = None
        if request.page_token:
            try:
                after = uuid.UUID(request.page_token)
            except ValueError:
                raise InvalidValue("page_token is not one this API gave", field="page_token") from None
        page = await review_queue(
            self._engine,
            statuses=statuses,
            type_=type_,
            transaction_id=transaction_id,
            page_size=request.page_size or DEFAULT_QUEUE_PAGE,
            after=after,
        )
        return pb.ListReviewQueueResponse(
            items=[_item_pb(item) for item in page.items],
            next_page_token=str(page.next_after) if page.next_after else "",
        )

    async def ProposeReviewAction(
        self, request: pb.ProposeReviewActionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProposeReviewActionResponse:
        review = self._review_service()
        kind = _KINDS.get(request.kind)
        if kind is None:
            raise InvalidValue("kind: RESOLVE_COMPLETED, REFUND, FAIL or RETRY", field="kind")
        if request.deriv_transaction_id < 0:
            raise InvalidValue("a Deriv transaction id is positive", field="deriv_transaction_id")
        receipt = request.mpesa_receipt.strip().upper() or None
        if receipt is not None and not _MPESA_RECEIPT.fullmatch(receipt):
            raise InvalidValue("an M-Pesa receipt is 8 to 20 of A-Z 0-9", field="mpesa_receipt")
        proposal = await review.propose(
            staff=_staff(),
            transaction_id=TransactionId.from_str(request.transaction_id, field="transaction_id"),
            kind=kind,
            reason=request.reason,
            evidence=Evidence(
                deriv_transaction_id=request.deriv_transaction_id or None, mpesa_receipt=receipt
            ),
        )
        return pb.ProposeReviewActionResponse(action=_action_pb(proposal))

    async def ApproveReviewAction(
        self, request: pb.ApproveReviewActionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApproveReviewActionResponse:
        review = self._review_service()
        proposal = await review.approve(staff=_staff(), action_id=_action_id(request.action_id))
        return pb.ApproveReviewActionResponse(action=_action_pb(proposal))

    async def RejectReviewAction(
        self, request: pb.RejectReviewActionRequest, context: grpc.aio.ServicerContext
    ) -> pb.RejectReviewActionResponse:
        review = self._review_service()
        proposal = await review.reject(
            staff=_staff(), action_id=_action_id(request.action_id), reason=request.reason
        )
        return pb.RejectReviewActionResponse(action=_action_pb(proposal))

    async def GetAuditorVerdicts(
        self, request: pb.GetAuditorVerdictsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetAuditorVerdictsResponse:
        runs = request.runs or 1
        if not 1 <= runs <= MAX_AUDIT_RUNS:
            raise InvalidValue(f"runs must be 1 to {MAX_AUDIT_RUNS}", field="runs")
        check = request.check.strip()
        if check and check not in AUDIT_CHECKS:
            raise InvalidValue(f"check must be one of {', '.join(AUDIT_CHECKS)}", field="check")
        async with self._engine.connect() as conn:
            verdicts = await recent_verdicts(conn, runs=runs, check=check or None)
        return pb.GetAuditorVerdictsResponse(
            verdicts=[
                pb.AuditorVerdict(
                    run_id=v.run_id,
                    check=v.check,
                    status=v.status,
                    summary=v.summary,
                    details_json=json.dumps(v.details, sort_keys=True),
                    checked_at=timestamp(v.checked_at),
                )
                for v in verdicts
            ],
            failing=any(v.failed for v in verdicts),
        )

    async def ListPaybillSuspense(
        self, request: pb.ListPaybillSuspenseRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPaybillSuspenseResponse:
        if request.page_size < 0:
            raise InvalidValue("page_size is not negative", field="page_size")
        items = await self._suspense().list(limit=request.page_size or 50)
        return pb.ListPaybillSuspenseResponse(
            items=[
                pb.PaybillSuspenseItem(
                    trans_id=i.trans_id,
                    amount=money(i.amount),
                    bill_ref=mask_phone(i.bill_ref),  # payers type their number as the account
                    msisdn_shown=mask_phone(i.msisdn_shown or ""),
                    reason=i.reason,
                    proposed_user_id=str(i.proposed_user_id or ""),
                    proposed_by=i.proposed_by or "",
                    refund_status=i.refund_status,
                    refund_proposed_by=i.refund_proposed_by,
                )
                for i in items
            ]
        )

    async def ProposePaybillAssignment(
        self, request: pb.ProposePaybillAssignmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProposePaybillAssignmentResponse:
        user_id = await self._suspense().propose_assignment(
            staff=_staff(),
            trans_id=_trans_id(request.trans_id),
            reference=request.reference,
            reason=request.reason,
        )
        return pb.ProposePaybillAssignmentResponse(user_id=str(user_id))

    async def ApprovePaybillAssignment(
        self, request: pb.ApprovePaybillAssignmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApprovePaybillAssignmentResponse:
        tx_id = await self._suspense().approve_assignment(
            staff=_staff(), trans_id=_trans_id(request.trans_id)
        )
        return pb.ApprovePaybillAssignmentResponse(transaction_id=str(tx_id))

    async def RejectPaybillAssignment(
        self, request: pb.RejectPaybillAssignmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.RejectPaybillAssignmentResponse:
        await self._suspense().reject_assignment(
            staff=_staff(), trans_id=_trans_id(request.trans_id), reason=request.reason
        )
        return pb.RejectPaybillAssignmentResponse()

    async def ProposePaybillRefund(
        self, request: pb.ProposePaybillRefundRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProposePaybillRefundResponse:
        view = await self._refund_use_case().propose(
            staff=_staff(), trans_id=_trans_id(request.trans_id), reason=request.reason
        )
        return pb.ProposePaybillRefundResponse(refund=_refund(view))

    async def ApprovePaybillRefund(
        self, request: pb.ApprovePaybillRefundRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApprovePaybillRefundResponse:
        view = await self._refund_use_case().approve(staff=_staff(), trans_id=_trans_id(request.trans_id))
        return pb.ApprovePaybillRefundResponse(refund=_refund(view))

    async def RejectPaybillRefund(
        self, request: pb.RejectPaybillRefundRequest, context: grpc.aio.ServicerContext
    ) -> pb.RejectPaybillRefundResponse:
        await self._refund_use_case().reject(
            staff=_staff(), trans_id=_trans_id(request.trans_id), reason=request.reason
        )
        return pb.RejectPaybillRefundResponse()

    def _refund_use_case(self) -> SuspenseRefunds:
        if self._refunds is None:
            raise RpcFailure.build(
                grpc.StatusCode.UNIMPLEMENTED, "paybill refunds are not handled here", reason="UNIMPLEMENTED"
            )
        return self._refunds

    def _suspense(self) -> PaybillSuspenseReview:
        if self._paybill is None:
            raise RpcFailure.build(
                grpc.StatusCode.UNIMPLEMENTED, "paybill suspense is not handled here", reason="UNIMPLEMENTED"
            )
        return self._paybill

    async def RevealCustomerPhone(
        self, request: pb.RevealCustomerPhoneRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevealCustomerPhoneResponse:
        review = self._review_service()
        phone = await review.reveal_phone(
            staff=_staff(),
            transaction_id=TransactionId.from_str(request.transaction_id, field="transaction_id"),
            reason=request.reason,
        )
        return pb.RevealCustomerPhoneResponse(phone=phone)

    # --- KYC attestations (four-eyes) -------------------------------------------------------

    async def ProposeKycAttestation(
        self, request: pb.ProposeKycAttestationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProposeKycAttestationResponse:
        identity = request.identity
        try:
            born = date.fromisoformat(identity.date_of_birth)
        except ValueError:
            raise InvalidValue("identity.date_of_birth: YYYY-MM-DD", field="identity.date_of_birth") from None
        proposal = await self._kyc_review().propose(
            staff=_staff(),
            user_id=UserId.from_str(request.user_id, field="user_id"),
            attestation=KycAttestation(
                first_name=identity.first_name,
                last_name=identity.last_name,
                date_of_birth=born,
                residence=identity.residence.strip(),
                citizen=identity.citizen.strip() or None,
                evidence=request.evidence.strip(),
                attested_by=_staff(),
            ),
        )
        return pb.ProposeKycAttestationResponse(attestation=self._attestation_pb(proposal))

    async def ApproveKycAttestation(
        self, request: pb.ApproveKycAttestationRequest, context: grpc.aio.ServicerContext
    ) -> pb.ApproveKycAttestationResponse:
        approved = await self._kyc_review().approve(
            staff=_staff(), attestation_id=_attestation_id(request.attestation_id)
        )
        return pb.ApproveKycAttestationResponse(attestation=self._attestation_pb(approved))

    async def RejectKycAttestation(
        self, request: pb.RejectKycAttestationRequest, context: grpc.aio.ServicerContext
    ) -> pb.RejectKycAttestationResponse:
        rejected = await self._kyc_review().reject(
            staff=_staff(), attestation_id=_attestation_id(request.attestation_id), reason=request.reason
        )
        return pb.RejectKycAttestationResponse(attestation=self._attestation_pb(rejected))

    async def ListKycAttestations(
        self, request: pb.ListKycAttestationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListKycAttestationsResponse:
        if not 0 <= request.page_size <= MAX_KYC_PAGE:
            raise InvalidValue(f"page_size must be 0 to {MAX_KYC_PAGE}", field="page_size")
        pending = await self._kyc_review().pending(limit=request.page_size or DEFAULT_KYC_PAGE)
        return pb.ListKycAttestationsResponse(attestations=[self._attestation_pb(p) for p in pending])

    async def RevealKycAttestation(
        self, request: pb.RevealKycAttestationRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevealKycAttestationResponse:
        proposal = await self._kyc_review().reveal(
            staff=_staff(), attestation_id=_attestation_id(request.attestation_id), reason=request.reason
        )
        return pb.RevealKycAttestationResponse(attestation=self._attestation_pb(proposal, masked=False))

    def _kyc_review(self) -> KycAttestationReview:
        if self._kyc is None:
            raise RpcFailure.build(
                grpc.StatusCode.UNIMPLEMENTED, "KYC attestations are not handled here", reason="UNIMPLEMENTED"
            )
        return self._kyc

    def _attestation_pb(self, p: ProposedAttestation, *, masked: bool = True) -> pb.KycAttestation:
        a = p.attestation
        try:
            acceptable = a.snapshot(self._clock.now()).is_acceptable()
        except KycAttestationRefused:
            acceptable = False
        return pb.KycAttestation(
            attestation_id=str(p.id),
            user_id=str(p.user_id),
            deriv_login_id=p.deriv_login_id,
            status=p.status.value,
            identity=pb.KycIdentity(
                first_name=_initial(a.first_name) if masked else a.first_name,
                last_name=_initial(a.last_name) if masked else a.last_name,
                date_of_birth="" if masked else a.date_of_birth.isoformat(),
                residence=a.residence,
                citizen=a.citizen or "",
            ),
            evidence=a.evidence,
            acceptable=acceptable,
            proposed_by=p.proposed_by,
            proposed_at=timestamp(p.proposed_at),
            decided_by=p.decided_by or "",
            decided_at=timestamp(p.decided_at),
            outcome=p.outcome or "",
        )

    def _review_service(self) -> ReviewService:
        if self._review is None:
            raise RpcFailure.build(
                grpc.StatusCode.UNIMPLEMENTED, "review actions are not available here", reason="UNIMPLEMENTED"
            )
        return self._review


def _refund(view: RefundView) -> pb.PaybillRefund:
    return pb.PaybillRefund(
        trans_id=view.trans_id,
        status=view.status.value,
        originator_conversation_id=view.originator_conversation_id,
        proposed_by=view.proposed_by,
        approved_by=view.approved_by or "",
        detail=view.detail,
    )


def _staff() -> str:
    principal = current_call().principal
    assert principal is not None  # the authentication interceptor put it there
    return principal.subject


def _initial(name: str) -> str:
    """A name masked to its initial: enough to tell two proposals apart, not to read the name."""
    name = name.strip()
    return f"{name[:1]}***" if name else ""


def _attestation_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise InvalidValue("attestation_id is not an attestation's id", field="attestation_id") from None


def _trans_id(text: str) -> str:
    trans_id = text.strip().upper()
    if not _MPESA_RECEIPT.fullmatch(trans_id):
        raise InvalidValue("a TransID is an M-Pesa receipt, 8 to 20 of A-Z 0-9", field="trans_id")
    return trans_id


def _action_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise InvalidValue("action_id is not a review action's id", field="action_id") from None


def _action_pb(p: Proposal) -> pb.ReviewAction:
    return pb.ReviewAction(
        action_id=str(p.id),
        transaction_id=str(p.transaction_id),
        kind=_KIND_PB[p.kind],
        status=_STATUS_PB[p.status],
        reason=p.reason,
        deriv_transaction_id=p.deriv_transaction_id or 0,
        mpesa_receipt=p.mpesa_receipt or "",
        proposed_by=p.proposed_by,
        proposed_at=timestamp(p.proposed_at),
        decided_by=p.decided_by or "",
        decided_at=timestamp(p.decided_at),
        outcome=p.outcome or "",
    )


def _item_pb(item: QueueItem) -> pb.ReviewItem:
    tx = item.transaction
    return pb.ReviewItem(
        transaction_id=str(tx.id),
        user_id=str(tx.user_id),
        type=tx.type.value,
        status=tx.status.value,
        reason=mask_phone(tx.failure_reason or ""),
        amount=money(tx.amount),
        converted_amount=money(tx.converted_amount),
        deriv_login_id=tx.deriv_login_id.value,
        created_at=timestamp(tx.created_at),
        updated_at=timestamp(tx.updated_at),
        version=tx.version,
        evidence=[
            pb.EvidenceRecord(
                kind=e.kind, status=e.status, fields=mask_fields(e.fields), updated_at=timestamp(e.updated_at)
            )
            for e in item.evidence
        ],
        saga_steps=[
            pb.SagaStepRecord(
                step=s.step,
                attempts=s.attempts,
                started_at=timestamp(s.started_at),
                updated_at=timestamp(s.updated_at),
                detail=mask_phone(s.detail or ""),
            )
            for s in item.steps.values()
        ],
        provider_answers=[
            pb.ProviderAnswer(
                source=a.source,
                kind=a.kind,
                reason=a.reason,
                detail=mask_text(a.detail) if a.detail else "",
                correlation_id=a.correlation_id,
                body=mask_text(a.body) if a.body else "",
                received_at=timestamp(a.received_at),
                status=a.status,
            )
            for a in item.answers
        ],
        ledger_lines=[
            pb.LedgerLine(
                posting_id=line.posting_id,
                description=line.description,
                account_kind=line.account_kind,
                side=line.side,
                amount=money_of(line.amount_cents, line.currency),
                created_at=timestamp(line.created_at),
                reverses_posting_id=line.reverses_posting_id,
            )
            for line in item.ledger
        ],
        audit_records=[
            pb.AuditRecord(
                id=a.id,
                occurred_at=timestamp(a.occurred_at),
                actor=a.actor,
                action=a.action,
                details_json=mask_text(a.details) if a.details else "",
            )
            for a in item.audit
        ],
        review_actions=[_action_pb(p) for p in item.proposals],
        possible_actions=[kind.value for kind in possible(view_of(tx))],
    )


def _run(row: Any) -> pb.ReconciliationRun:
    return pb.ReconciliationRun(
        run_id=str(row.id),
        trigger=row.trigger,
        window_from=timestamp(row.window_from),
        window_to=timestamp(row.window_to),
        status=row.status,
        error=row.error or "",
        counts={str(k): int(v) for k, v in json.loads(row.counts or "{}").items()},
        unexplained=row.unexplained,
        started_at=timestamp(row.started_at),
        finished_at=timestamp(row.finished_at),
    )


def _item(row: Any) -> pb.ReconciliationItem:
    def amount(prefix: str) -> Any:
        cents = getattr(row, f"{prefix}_cents")
        return None if cents is None else money_of(int(cents), str(getattr(row, f"{prefix}_currency")))

    return pb.ReconciliationItem(
        item_key=row.item_key,
        source=row.source,
        item_class=row.item_class,
        provider_ref=row.provider_ref or "",
        transaction_id=str(row.transaction_id) if row.transaction_id else "",
        provider_amount=amount("provider_amount"),
        penpay_amount=amount("penpay_amount"),
        occurred_at=timestamp(row.occurred_at),
        detail=mask_phone(row.detail or ""),
        review_status=row.review_status,
        suspense_posting_id=str(row.suspense_posting_id) if row.suspense_posting_id else "",
        resolved_by=row.resolved_by or "",
        resolution=mask_phone(row.resolution or ""),
        resolved_at=timestamp(row.resolved_at),
        write_off_proposed_by="" if row.write_off_posting_id else (row.write_off_proposed_by or ""),
        write_off_posting_id=str(row.write_off_posting_id) if row.write_off_posting_id else "",
    )
