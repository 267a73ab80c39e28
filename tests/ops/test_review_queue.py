"""The review queue and its four-eyes actions over real sockets (issue 17, item 1).

A deposit Deriv refuses for good (the client's country is outside the agent's portfolio) ends in
NEEDS_REVIEW with the customer's KES booked. Staff see it with its evidence, steps and audit; one
operator proposes, another person approves; the evidence is checked on Deriv's own statement
through the gateway.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from sqlalchemy import select

from domain.payments.status import TransactionStatus as S
from domain.shared.ids import TransactionId, UserId
from domain.wallet.money import Currency
from penpay.auth.v1 import auth_pb2, auth_pb2_grpc
from penpay.deriv.v1 import deriv_gateway_pb2 as deriv_pb2
from penpay.deriv.v1 import deriv_gateway_pb2_grpc as deriv_pb2_grpc
from penpay.ops.v1 import ops_pb2 as pb
from penpay_api.errors import parse_status
from persistence.audit import AuditRecord, verify_chain, write_pending
from persistence.tables import audit_logs, review_actions
from tests.ops.conftest import Review, bearer

pytestmark = pytest.mark.integration

REFUSED_CLIENT = "CR90000004"  # residence ug: outside the simulated agent's portfolio (ke)
RESOLVE = pb.REVIEW_ACTION_KIND_RESOLVE_COMPLETED
REFUND = pb.REVIEW_ACTION_KIND_REFUND
FAIL = pb.REVIEW_ACTION_KIND_FAIL
RETRY = pb.REVIEW_ACTION_KIND_RETRY
PASSWORD = "correct horse battery 9"


def reason_of(error: grpc.aio.AioRpcError) -> str:
    parsed = parse_status(error.trailing_metadata())
    assert parsed is not None and parsed.error_info is not None
    reason: str = parsed.error_info.reason
    return reason


async def refused_deposit(review: Review, user: UserId | None = None) -> TransactionId:
    stack = review.stack
    user = user or await stack.user(loginid=REFUSED_CLIENT)
    tx = await stack.deposit(user, 1_300)  # USD 10.00
    done = await stack.settle(tx.id)
    assert done.status is S.NEEDS_REVIEW, done.failure_reason
    assert "Deriv refused" in (done.failure_reason or "")
    return tx.id


async def audit_actions(review: Review, tx_id: TransactionId) -> list[tuple[str, str, dict[str, Any]]]:
    import json

    async with review.stack.engine.connect() as connection:
        rows = await connection.execute(
            select(audit_logs.c.actor, audit_logs.c.action, audit_logs.c.details)
            .where(audit_logs.c.subject_id == str(tx_id), audit_logs.c.action.like("review.%"))
            .order_by(audit_logs.c.id)
        )
        return [(r.actor, r.action, json.loads(r.details)) for r in rows]


async def user_token(review: Review) -> str:
    auth = auth_pb2_grpc.AuthServiceStub(review.channel)
    email = f"review{secrets.token_hex(4)}@example.co.ke"
    await auth.Register(
        auth_pb2.RegisterRequest(
            email=email, phone_number=f"+2547{secrets.randbelow(10**8):08d}", password=PASSWORD
        )
    )
    session = await auth.Login(
        auth_pb2.LoginRequest(login=email, password=PASSWORD, device_id="review-phone", device_name="Phone")
    )
    return str(session.access_token)


async def test_the_queue_is_for_staff_and_each_action_for_its_role(review: Review) -> None:
    tx_id = await refused_deposit(review)

    with pytest.raises(grpc.aio.AioRpcError) as user_refused:
        await review.ops.ListReviewQueue(
            pb.ListReviewQueueRequest(), metadata=bearer(await user_token(review))
        )
    assert user_refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(user_refused.value) == "OPERATOR_ROLE_REQUIRED"

    viewer = review.staff("vera", "viewer")
    queue = await review.ops.ListReviewQueue(pb.ListReviewQueueRequest(), metadata=viewer)
    assert [item.transaction_id for item in queue.items] == [str(tx_id)]
    item = queue.items[0]
    assert item.status == "NEEDS_REVIEW" and "Deriv refused" in item.reason
    evidence = {e.kind: e for e in item.evidence}
    assert evidence["MPESA_REQUEST"].status == "CONFIRMED"
    assert evidence["MPESA_REQUEST"].fields["mpesa_receipt_number"]
    assert evidence["DERIV_TRANSFER"].status == "FAILED"
    assert any(step.step == "deriv_transfer" and step.attempts == 1 for step in item.saga_steps)
    assert any(a.source == "stk_callback" and a.body for a in item.provider_answers)
    assert {"NeedsReview", "TransactionCreated"} <= {a.action for a in item.audit_records}
    assert list(item.possible_actions) == ["RESOLVE_COMPLETED", "REFUND"]

    for who, method, request in (
        (viewer, review.ops.ProposeReviewAction, pb.ProposeReviewActionRequest(
            transaction_id=str(tx_id), kind=RESOLVE, reason="paid by hand", deriv_transaction_id=1)),
        (review.staff("olga", "operator"), review.ops.ApproveReviewAction,
         pb.ApproveReviewActionRequest(action_id=str(uuid.uuid4()))),
        (review.staff("amos", "approver"), review.ops.ProposeReviewAction, pb.ProposeReviewActionRequest(
            transaction_id=str(tx_id), kind=RESOLVE, reason="paid by hand", deriv_transaction_id=1)),
    ):  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await method(request, metadata=who)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(refused.value) == "ROLE_REQUIRED"
    async with review.stack.engine.connect() as connection:
        assert (await connection.execute(select(review_actions))).first() is None

    # A record committed but not chained yet (the background sealer's lag) is shown already, id 0.
    waiting = AuditRecord(datetime(2026, 3, 1, 12, 0, tzinfo=UTC), "api", "Waiting", "T", str(tx_id), {})
    async with review.stack.engine.begin() as connection:
        await write_pending(connection, [waiting])
    queue = await review.ops.ListReviewQueue(pb.ListReviewQueueRequest(), metadata=viewer)
    last = queue.items[0].audit_records[-1]
    assert (last.action, last.id) == ("Waiting", 0)
    assert all(a.id > 0 for a in queue.items[0].audit_records[:-1])


async def test_one_operator_cannot_move_money_and_denied_evidence_is_refused(review: Review) -> None:
    stack = review.stack
    tx_id = await refused_deposit(review)
    olga = review.staff("olga", "operator", "approver")  # holds both roles, still one person
    amos = review.staff("amos", "approver")
    wallet_usd = await stack.wallet_balance((await stack.get(tx_id)).user_id, Currency.USD)
    assert wallet_usd == 10_00  # the refusal gave the reservation back to the user's wallet

    bogus = await review.ops.ProposeReviewAction(
        pb.ProposeReviewActionRequest(
            transaction_id=str(tx_id),
            kind=RESOLVE,
            reason="customer says it arrived",
            deriv_transaction_id=4242,
        ),
        metadata=olga,
    )
    assert bogus.action.status == pb.REVIEW_ACTION_STATUS_PROPOSED
    assert bogus.action.proposed_by == "operator:olga"

    with pytest.raises(grpc.aio.AioRpcError) as own:
        await review.ops.ApproveReviewAction(
            pb.ApproveReviewActionRequest(action_id=bogus.action.action_id), metadata=olga
        )
    assert own.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(own.value) == "FOUR_EYES_REQUIRED"
    assert (await stack.get(tx_id)).status is S.NEEDS_REVIEW

    with pytest.raises(grpc.aio.AioRpcError) as denied:  # nothing on Deriv's statement carries it
        await review.ops.ApproveReviewAction(
            pb.ApproveReviewActionRequest(action_id=bogus.action.action_id), metadata=amos
        )
    assert denied.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(denied.value) == "EVIDENCE_DENIED"
    assert (await stack.get(tx_id)).status is S.NEEDS_REVIEW
    assert await stack.wallet_balance((await stack.get(tx_id)).user_id, Currency.USD) == 10_00

    # The client's country is fixed at Deriv and an operator pays by hand, with our reference.
    await review.deriv_control(
        "POST", "/accounts", {"accounts": [{"loginid": REFUSED_CLIENT, "user_id": 9004, "currency": "USD",
                                            "balance": "100.00", "residence": "ke"}]},
    )  # fmt: skip
    await review.pay_by_hand(REFUSED_CLIENT, "10.00", f"PenPay {tx_id}")  # the gateway's reference
    [manual] = (await review.deriv_control("GET", f"/books/transfers?description_contains={tx_id}"))[
        "transfers"
    ]
    paid_as = int(manual["debit_transaction_id"])

    wrong = await review.ops.ProposeReviewAction(
        pb.ProposeReviewActionRequest(
            transaction_id=str(tx_id), kind=RESOLVE, reason="paid by hand", deriv_transaction_id=paid_as + 1
        ),
        metadata=olga,
    )
    with pytest.raises(grpc.aio.AioRpcError) as wrong_id:
        await review.ops.ApproveReviewAction(
            pb.ApproveReviewActionRequest(action_id=wrong.action.action_id), metadata=amos
        )
    assert reason_of(wrong_id.value) == "EVIDENCE_DENIED"

    right = await review.ops.ProposeReviewAction(
        pb.ProposeReviewActionRequest(
            transaction_id=str(tx_id), kind=RESOLVE, reason="paid by hand", deriv_transaction_id=paid_as
        ),
        metadata=olga,
    )
    approved = await review.ops.ApproveReviewAction(
        pb.ApproveReviewActionRequest(action_id=right.action.action_id), metadata=amos
    )
    assert approved.action.status == pb.REVIEW_ACTION_STATUS_EXECUTED
    assert (approved.action.proposed_by, approved.action.decided_by) == ("operator:olga", "operator:amos")
    done = await stack.get(tx_id)
    assert done.status is S.COMPLETED
    assert done.deriv_transfer is not None and done.deriv_transfer.deriv_transaction_id == paid_as
    assert await stack.wallet_balance(done.user_id, Currency.USD) == 0

    with pytest.raises(grpc.aio.AioRpcError) as again:  # approved once: never executed twice
        await review.ops.ApproveReviewAction(
            pb.ApproveReviewActionRequest(action_id=right.action.action_id),
            metadata=review.staff("ann", "approver"),
        )
    assert reason_of(again.value) == "REVIEW_ACTION_NOT_OPEN"

    trail = await audit_actions(review, tx_id)
    assert [(actor, action) for actor, action, _ in trail] == [
        ("operator:olga", "review.proposed"),
        ("operator:olga", "review.approval_refused"),
        ("operator:amos", "review.refused"),
        ("operator:olga", "review.proposed"),
        ("operator:amos", "review.refused"),
        ("operator:olga", "review.proposed"),
        ("operator:amos", "review.approved"),
    ]
    for _, action, details in trail:
        assert details["proposed_by"] == "operator:olga"
        if action in ("review.refused", "review.approved"):
            assert details["approved_by"] == "operator:amos"
    assert trail[-1][2]["provider_line"]["deriv_transaction_id"] == paid_as
    async with stack.engine.connect() as connection:
        assert (await verify_chain(connection)).ok


async def test_the_gateway_reads_the_statement_for_evidence_and_refuses_bad_references(
    review: Review,
) -> None:
    async with grpc.aio.insecure_channel(review.stack.gateway.address) as channel:
        gateway = deriv_pb2_grpc.DerivGatewayServiceStub(channel)
        for bad in ("", "x" * 65, "PenPay 1", "a;drop"):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await gateway.FindStatementLine(deriv_pb2.FindStatementLineRequest(reference=bad))
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, bad
        nothing = await gateway.FindStatementLine(
            deriv_pb2.FindStatementLineRequest(reference=str(uuid.uuid4()), since_unix=1)
        )
        assert not nothing.found


async def test_an_approved_refund_pays_the_customer_back_once(review: Review) -> None:
    stack = review.stack
    tx_id = await refused_deposit(review)
    olga, amos = review.staff("olga", "operator"), review.staff("amos", "approver")
    user_id = (await stack.get(tx_id)).user_id

    proposed = await review.ops.ProposeReviewAction(
        pb.ProposeReviewActionRequest(transaction_id=str(tx_id), kind=REFUND, reason="Deriv refuses: refund"),
        metadata=olga,
    )
    assert (await stack.mpesa_books())["b2c"]["transactions"] == []  # a proposal moves nothing
    approved = await review.ops.ApproveReviewAction(
        pb.ApproveReviewActionRequest(action_id=proposed.action.action_id), metadata=amos
    )
    assert approved.action.status == pb.REVIEW_ACTION_STATUS_EXECUTED

    done = await stack.settle(tx_id, until={S.REVERSED})
    assert done.mpesa_disbursement is not None and done.mpesa_disbursement.transaction_receipt
    paid = [b for b in (await stack.mpesa_books())["b2c"]["transactions"] if b.get("paid")]
    assert [(b["originator_conversation_id"], b["amount"]) for b in paid] == [
        (done.mpesa_disbursement.originator_conversation_id, 1_300)
    ]
    for _ in range(3):  # late callbacks and sweeps change nothing
        await stack.pump()
        await stack.sweeper.sweep_once()
    assert len([b for b in (await stack.mpesa_books())["b2c"]["transactions"] if b.get("paid")]) == 1
    assert await stack.wallet_balance(user_id, Currency.KES) == 0
    assert await stack.wallet_balance(user_id, Currency.USD) == 0
    trail = await audit_actions(review, tx_id)
    assert [(actor, action) for actor, action, _ in trail] == [
        ("operator:olga", "review.proposed"),
        ("operator:amos", "review.approved"),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await review.ops.ProposeReviewAction(
            pb.ProposeReviewActionRequest(transaction_id=str(tx_id), kind=REFUND, reason="again"),
            metadata=olga,
        )
    assert reason_of(again.value) == "REVIEW_ACTION_NOT_POSSIBLE"


async def withdrawal_in_review(review: Review, user: UserId, *, debit_executed: bool) -> TransactionId:
    """A withdrawal under review whose Deriv debit was requested and never answered: either it
    never reached Deriv (the request was recorded, then the worker died), or Deriv executed it
    and the answer was lost (the socket dropped after the debit)."""
    stack = review.stack
    tx = await stack.withdrawal(user, 10_00)
    if debit_executed:
        await stack.deriv_fault(
            kind="drop_after", call="paymentagent_withdraw", match={"description": str(tx.id)}, times=1
        )
        # ... and Deriv's statement cannot be read: the debit's outcome stays unknown
        await stack.deriv_fault(kind="rate_limit", call="statement")
        with contextlib.suppress(Exception):
            await stack.withdrawals.confirm_withdrawal(
                user_id=user, transaction_id=tx.id, verification_code=await stack.withdrawal_code()
            )
        await review.deriv_control("DELETE", "/faults")
    async with stack.uow() as uow:
        stuck = await uow.transactions.get_for_update(tx.id)
        assert stuck is not None
        if stuck.status is S.AWAITING_WITHDRAWAL_CODE:
            if not stuck.deriv_withdrawal_may_have_gone():
                stuck.deriv_withdrawal_requested()
            stuck.mark_outcome_unknown("Deriv withdrawal: no answer")
        assert stuck.status is S.OUTCOME_UNKNOWN, stuck.status
        stuck.needs_review("Deriv withdrawal lookups exhausted")
        await uow.transactions.save(stuck)
        await uow.commit()
    return tx.id


async def test_fail_only_where_the_provider_proves_no_money_moved(review: Review) -> None:
    stack = review.stack
    olga, amos = review.staff("olga", "operator"), review.staff("amos", "approver")
    user = await stack.user()
    never_sent = await withdrawal_in_review(review, user, debit_executed=False)
    debited = await withdrawal_in_review(review, user, debit_executed=True)

    async def fail(tx_id: TransactionId) -> pb.ApproveReviewActionResponse:
        proposed = await review.ops.ProposeReviewAction(
            pb.ProposeReviewActionRequest(transaction_id=str(tx_id), kind=FAIL, reason="never reached Deriv"),
            metadata=olga,
        )
        response: pb.ApproveReviewActionResponse = await review.ops.ApproveReviewAction(
            pb.ApproveReviewActionRequest(action_id=proposed.action.action_id), metadata=amos
        )
        return response

    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await fail(debited)
    assert reason_of(denied.value) == "EVIDENCE_DENIED"
    assert "money moved" in (denied.value.details() or "")
    assert (await stack.get(debited)).status is S.NEEDS_REVIEW

    failed = await fail(never_sent)
    assert failed.action.status == pb.REVIEW_ACTION_STATUS_EXECUTED
    done = await stack.get(never_sent)
    assert done.status is S.FAILED and "failed in review" in (done.failure_reason or "")
    assert done.deriv_withdrawal is not None and done.deriv_withdrawal.status == "FAILED"
    assert await stack.deriv_transfers(str(never_sent)) == 0
    assert [a for _, a, _ in await audit_actions(review, never_sent)] == [
        "review.proposed",
        "review.approved",
    ]
    assert [a for _, a, _ in await audit_actions(review, debited)] == ["review.proposed", "review.refused"]
    # The executed debit is the review's to settle: resolve the queue item so the books agree.
    async with stack.uow() as uow:
        still = await uow.transactions.get_for_update(debited)
        assert still is not None and still.status is S.NEEDS_REVIEW


async def test_a_rejected_proposal_moves_nothing_and_frees_the_transaction(review: Review) -> None:
    stack = review.stack
    tx_id = await refused_deposit(review)
    olga = review.staff("olga", "operator", "approver")
    amos = review.staff("amos", "approver")
    before = await stack.get(tx_id)
    proposed = await review.ops.ProposeReviewAction(
        pb.ProposeReviewActionRequest(transaction_id=str(tx_id), kind=REFUND, reason="refund it"),
        metadata=olga,
    )
    with pytest.raises(grpc.aio.AioRpcError) as twice:
        await review.ops.ProposeReviewAction(
            pb.ProposeReviewActionRequest(transaction_id=str(tx_id), kind=REFUND, reason="again"),
            metadata=olga,
        )
    assert reason_of(twice.value) == "REVIEW_ACTION_ALREADY_OPEN"
    with pytest.raises(grpc.aio.AioRpcError) as own:
        await review.ops.RejectReviewAction(
            pb.RejectReviewActionRequest(action_id=proposed.action.action_id, reason="changed my mind"),
            metadata=olga,
        )
    assert reason_of(own.value) == "FOUR_EYES_REQUIRED"
    with pytest.raises(grpc.aio.AioRpcError) as no_reason:
        await review.ops.RejectReviewAction(
            pb.RejectReviewActionRequest(action_id=proposed.action.action_id, reason=" "), metadata=amos
        )
    assert no_reason.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    rejected = await review.ops.RejectReviewAction(
        pb.RejectReviewActionRequest(action_id=proposed.action.action_id, reason="ask the customer first"),
        metadata=amos,
    )
    assert rejected.action.status == pb.REVIEW_ACTION_STATUS_REJECTED
    assert (rejected.action.decided_by, rejected.action.outcome) == (
        "operator:amos",
        "ask the customer first",
    )
    after = await stack.get(tx_id)
    assert (after.status, after.version, after.mpesa_disbursement) == (S.NEEDS_REVIEW, before.version, None)
    assert not (await stack.mpesa_books())["b2c"]["transactions"]
    trail = await audit_actions(review, tx_id)
    assert [(actor, action) for actor, action, _ in trail] == [
        ("operator:olga", "review.proposed"),
        ("operator:olga", "review.rejection_refused"),
        ("operator:amos", "review.rejected"),
    ]
    queue = await review.ops.ListReviewQueue(
        pb.ListReviewQueueRequest(transaction_id=str(tx_id)), metadata=review.staff("vera", "viewer")
    )
    assert [a.status for a in queue.items[0].review_actions] == [pb.REVIEW_ACTION_STATUS_REJECTED]
    again = await review.ops.ProposeReviewAction(  # the transaction is free for a new proposal
        pb.ProposeReviewActionRequest(transaction_id=str(tx_id), kind=REFUND, reason="customer agreed"),
        metadata=olga,
    )
    assert again.action.status == pb.REVIEW_ACTION_STATUS_PROPOSED


async def test_a_proposal_made_on_an_older_state_is_refused_not_executed(review: Review) -> None:
    stack = review.stack
    tx_id = await refused_deposit(review)
    proposed = await review.ops.ProposeReviewAction(
        pb.ProposeReviewActionRequest(transaction_id=str(tx_id), kind=REFUND, reason="refund it"),
        metadata=review.staff("olga", "operator"),
    )
    async with stack.uow() as uow:  # something else touched the transaction meanwhile
        moved = await uow.transactions.get_for_update(tx_id)
        assert moved is not None
        moved.retry_approved("elsewhere")
        await uow.transactions.save(moved)
        await uow.commit()

    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await review.ops.ApproveReviewAction(
            pb.ApproveReviewActionRequest(action_id=proposed.action.action_id),
            metadata=review.staff("amos", "approver"),
        )
    assert reason_of(stale.value) == "REVIEW_ACTION_NOT_POSSIBLE"
    assert "changed after the proposal" in (stale.value.details() or "")
    assert (await stack.get(tx_id)).mpesa_disbursement is None
    assert [a for _, a, _ in await audit_actions(review, tx_id)] == ["review.proposed", "review.refused"]


async def test_the_queue_pages_and_filters(review: Review) -> None:
    user = await review.stack.user(loginid=REFUSED_CLIENT)
    first, second = await refused_deposit(review, user), await refused_deposit(review, user)
    viewer = review.staff("vera", "viewer")
    page = await review.ops.ListReviewQueue(pb.ListReviewQueueRequest(page_size=1), metadata=viewer)
    assert [i.transaction_id for i in page.items] == [str(first)] and page.next_page_token
    rest = await review.ops.ListReviewQueue(
        pb.ListReviewQueueRequest(page_size=1, page_token=page.next_page_token), metadata=viewer
    )
    assert [i.transaction_id for i in rest.items] == [str(second)] and not rest.next_page_token
    withdrawals = await review.ops.ListReviewQueue(
        pb.ListReviewQueueRequest(type="WITHDRAWAL"), metadata=viewer
    )
    assert not withdrawals.items
    for bad in (
        pb.ListReviewQueueRequest(page_size=101),
        pb.ListReviewQueueRequest(page_token="not-a-token"),
        pb.ListReviewQueueRequest(type="LOAN"),
        pb.ListReviewQueueRequest(transaction_id="42"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await review.ops.ListReviewQueue(bad, metadata=viewer)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, bad
