"""OpsService.CloseReconciliationItem over gRPC: an operator closes an item queued for review with
an explanation where no money moves in PenPay; it stays RESOLVED across runs that see the same
provider record and is queued again when that record changes."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

import grpc
import pytest
from sqlalchemy import func, select

from application.reconciliation.ports import Item
from application.reconciliation.rules import Amount, ItemClass
from penpay.ops.v1 import ops_pb2
from penpay_api.auth import APPROVER_ROLE, VIEWER_ROLE
from penpay_api.errors import parse_status
from persistence import ledger_balances
from persistence.reconciliation import SqlReconciliationStore
from persistence.tables import audit_logs, ledger_accounts, ledger_postings, reconciliation_items
from tests.floats import fund_test_floats

from .conftest import Harness, bearer

pytestmark = pytest.mark.integration


def reason_of(error: grpc.aio.AioRpcError) -> str:
    parsed = parse_status(error.trailing_metadata())
    assert parsed is not None and parsed.error_info is not None
    return str(parsed.error_info.reason)


def staff(api: Harness, name: str, *roles: str) -> tuple[tuple[str, str], ...]:
    token, _ = api.tokens.issue_operator_token(operator=name, now=api.clock.now(), roles=roles)
    return bearer(token)


async def a_run(api: Harness, *items: Item) -> str:
    store = SqlReconciliationStore(api.core.engine)
    now = api.clock.now()
    run_id = await store.start_run("cli", now - timedelta(hours=1), now, now)
    for item in items:
        await store.record_item(run_id, item, now)
    await store.finish_run(run_id, "SUCCEEDED", {}, len(items), None, now)
    return run_id


def missing(key: str, cents: int = 150_00, ref: str = "RCPTFEE1") -> Item:
    return Item(
        key=key,
        source="mpesa_c2b",
        item_class=ItemClass.MISSING_AT_PROVIDER,
        detail="PenPay holds a receipt M-Pesa does not list",
        provider_ref=ref,
        provider_amount=Amount(cents, "KES"),
        occurred_at=None,
    )


async def row(api: Harness, key: str) -> object:
    async with api.core.engine.connect() as conn:
        found = (
            await conn.execute(select(reconciliation_items).where(reconciliation_items.c.item_key == key))
        ).first()
    assert found is not None
    return found


async def audit_of(api: Harness, key: str) -> list[tuple[str, str, dict[str, object]]]:
    async with api.core.engine.connect() as conn:
        rows = await conn.execute(
            select(audit_logs.c.actor, audit_logs.c.action, audit_logs.c.details)
            .where(audit_logs.c.subject_id == key[:64], audit_logs.c.action.like("reconciliation.%"))
            .order_by(audit_logs.c.id)
        )
        return [(r.actor, r.action, json.loads(r.details)) for r in rows]


async def close(api: Harness, key: str, reason: str, auth: tuple[tuple[str, str], ...]) -> object:
    return await api.ops.CloseReconciliationItem(
        ops_pb2.CloseReconciliationItemRequest(item_key=key, reason=reason), metadata=auth
    )


async def refused(
    api: Harness, key: str, reason: str, auth: tuple[tuple[str, str], ...]
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await close(api, key, reason, auth)
    return caught.value


async def test_an_operator_closes_an_open_item_with_a_reason_audited_with_their_name(api: Harness) -> None:
    key = f"c2b:CLOSE{uuid.uuid4().hex[:12]}"
    run_id = await a_run(api, missing(key))
    olga = staff(api, "olga", "operator")

    # refused, nothing changed: a viewer or an approver, an empty reason, an unknown item
    viewer = await refused(api, key, "provider fee", staff(api, "vera", VIEWER_ROLE))
    assert viewer.code() == grpc.StatusCode.PERMISSION_DENIED
    approver = await refused(api, key, "provider fee", staff(api, "ann", APPROVER_ROLE))
    assert approver.code() == grpc.StatusCode.PERMISSION_DENIED
    empty = await refused(api, key, "   ", olga)
    assert (empty.code(), reason_of(empty)) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_VALUE")
    unknown = await refused(api, key + "x", "provider fee", olga)
    assert (unknown.code(), reason_of(unknown)) == (
        grpc.StatusCode.NOT_FOUND,
        "RECONCILIATION_ITEM_NOT_FOUND",
    )
    assert (await row(api, key)).review_status == "OPEN"  # type: ignore[attr-defined]

    closed = await close(api, key, "  provider fee, ticket 123 ", olga)
    assert (closed.item_key, closed.review_status) == (key, "RESOLVED")  # type: ignore[attr-defined]
    listed = await api.ops.ListReconciliationItems(
        ops_pb2.ListReconciliationItemsRequest(run_id=run_id), metadata=olga
    )
    [item] = listed.items
    assert (item.review_status, item.resolved_by, item.resolution, item.item_class) == (
        "RESOLVED",
        "operator:olga",
        "provider fee, ticket 123",
        "MISSING_AT_PROVIDER",
    )
    assert item.resolved_at.seconds == int(api.clock.now().timestamp())
    [*_, (actor, action, details)] = await audit_of(api, key)
    assert (actor, action, details["reason"], details["class"]) == (
        "operator:olga",
        "reconciliation.item_closed",
        "provider fee, ticket 123",
        "MISSING_AT_PROVIDER",
    )

    again = await refused(api, key, "again", staff(api, "otto", "operator"))
    assert (again.code(), reason_of(again)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "RECONCILIATION_ITEM_NOT_OPEN",
    )
    assert (await row(api, key)).resolved_by == "operator:olga"  # type: ignore[attr-defined]


async def test_a_later_run_keeps_it_resolved_unless_the_provider_s_record_changes(api: Harness) -> None:
    key = f"c2b:REOPEN{uuid.uuid4().hex[:12]}"
    await a_run(api, missing(key))
    await close(api, key, "duplicate at Safaricom, ticket 9", staff(api, "olga", "operator"))

    await a_run(api, missing(key))  # the same record seen again: an operator explained it
    assert (await row(api, key)).review_status == "RESOLVED"  # type: ignore[attr-defined]

    await a_run(api, missing(key, cents=151_00))  # the provider's record changed: queued again
    reopened = await row(api, key)
    assert (reopened.review_status, reopened.resolved_by) == ("OPEN", "operator:olga")  # type: ignore[attr-defined]
    actions = [action for _, action, _ in await audit_of(api, key)]
    assert actions[-2:] == ["reconciliation.item_closed", "reconciliation.item_reopened"]
    await close(api, key, "second fee, ticket 10", staff(api, "otto", "operator"))
    assert (await row(api, key)).resolved_by == "operator:otto"  # type: ignore[attr-defined]


async def test_an_item_whose_money_is_in_suspense_or_that_matched_is_not_closed(api: Harness) -> None:
    stamp = str(uuid.uuid4().int)[:12]
    held = Item(
        key=f"deriv:{stamp}",
        source="deriv_statement",
        item_class=ItemClass.UNKNOWN_AT_PENPAY,
        detail="money at the provider with no PenPay transaction",
        provider_ref=stamp,
        provider_amount=Amount(7_00, "USD"),
        float_kind="DERIV_AGENT_FLOAT",
    )
    matched = Item(key=f"c2b:OK{stamp}", source="mpesa_c2b", item_class=ItemClass.MATCHED, detail="matched")
    await a_run(api, held, matched)
    async with api.core.engine.connect() as conn:
        posting = (await row(api, held.key)).suspense_posting_id  # type: ignore[attr-defined]
        assert (
            await conn.execute(select(ledger_postings.c.id).where(ledger_postings.c.id == posting))
        ).first()
    olga = staff(api, "olga", "operator")
    suspense = await refused(api, held.key, "fee", olga)
    assert (suspense.code(), reason_of(suspense)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "RECONCILIATION_ITEM_HOLDS_SUSPENSE",
    )
    not_open = await refused(api, matched.key, "fee", olga)
    assert reason_of(not_open) == "RECONCILIATION_ITEM_NOT_OPEN"
    assert (await row(api, held.key)).review_status == "OPEN"  # type: ignore[attr-defined]
    assert [a for _, a, _ in await audit_of(api, held.key)] == ["reconciliation.item_queued"]


async def balance(api: Harness, kind: str, currency: str) -> int:
    a = ledger_accounts
    async with api.core.engine.connect() as conn:
        value = (
            await conn.execute(
                select(func.sum(ledger_balances.balance(a))).where(a.c.kind == kind, a.c.currency == currency)
            )
        ).scalar_one_or_none()
    return int(value or 0)


async def write_off_call(
    api: Harness, method: str, key: str, auth: tuple[tuple[str, str], ...], reason: str = ""
) -> object:
    request = getattr(ops_pb2, f"{method}Request")
    fields = {"item_key": key} if method.startswith("Approve") else {"item_key": key, "reason": reason}
    return await getattr(api.ops, method)(request(**fields), metadata=auth)


async def write_off_refused(
    api: Harness, method: str, key: str, auth: tuple[tuple[str, str], ...], reason: str = "fee"
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await write_off_call(api, method, key, auth, reason)
    return caught.value


async def test_a_suspense_write_off_takes_two_people_and_is_booked_once(api: Harness) -> None:
    stamp = str(uuid.uuid4().int)[:12]
    held = Item(
        key=f"deriv:{stamp}",
        source="deriv_statement",
        item_class=ItemClass.UNKNOWN_AT_PENPAY,
        detail="money at Deriv with no PenPay transaction",
        provider_ref=stamp,
        provider_amount=Amount(7_00, "USD"),
        float_kind="DERIV_AGENT_FLOAT",
    )
    no_suspense = missing(f"c2b:NOSUSP{uuid.uuid4().hex[:10]}")
    run_id = await a_run(api, held, no_suspense)
    key = held.key
    olga = staff(api, "olga", "operator", APPROVER_ROLE)  # holds both roles: still one person
    otto = staff(api, "otto", "operator")
    amos = staff(api, "amos", APPROVER_ROLE)
    suspense0, written0 = (
        await balance(api, "SUSPENSE", "USD"),
        await balance(api, "RECONCILIATION_WRITE_OFF", "USD"),
    )

    propose, approve, reject = (
        "ProposeReconciliationWriteOff",
        "ApproveReconciliationWriteOff",
        "RejectReconciliationWriteOff",
    )
    viewer = await write_off_refused(api, propose, key, staff(api, "vera", VIEWER_ROLE))
    assert viewer.code() == grpc.StatusCode.PERMISSION_DENIED
    only_approver = await write_off_refused(api, propose, key, amos)
    assert only_approver.code() == grpc.StatusCode.PERMISSION_DENIED
    nothing_held = await write_off_refused(api, propose, no_suspense.key, olga)
    assert reason_of(nothing_held) == "RECONCILIATION_ITEM_HOLDS_NO_SUSPENSE"
    not_proposed = await write_off_refused(api, approve, key, amos)
    assert reason_of(not_proposed) == "RECONCILIATION_WRITE_OFF_NOT_PROPOSED"

    await write_off_call(api, propose, key, olga, "Deriv fee, ticket 77")
    twice = await write_off_refused(api, propose, key, otto)
    assert reason_of(twice) == "RECONCILIATION_WRITE_OFF_ALREADY_PROPOSED"
    own = await write_off_refused(api, approve, key, olga)
    assert (own.code(), reason_of(own)) == (grpc.StatusCode.PERMISSION_DENIED, "FOUR_EYES_REQUIRED")
    operator_only = await write_off_refused(api, approve, key, otto)
    assert operator_only.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await balance(api, "SUSPENSE", "USD") == suspense0  # nothing booked yet

    await write_off_call(api, reject, key, amos, "ask Deriv first")
    after_reject = await row(api, key)
    assert (after_reject.review_status, after_reject.write_off_proposed_by) == ("OPEN", None)  # type: ignore[attr-defined]
    await write_off_call(api, propose, key, olga, "Deriv fee, ticket 78")
    done = await write_off_call(api, approve, key, amos)
    assert done.item_key == key and done.posting_id  # type: ignore[attr-defined]

    # SUSPENSE held the 7.00 as a credit (money came into the Deriv float): now written off, once
    assert await balance(api, "SUSPENSE", "USD") == suspense0 - 7_00
    assert await balance(api, "RECONCILIATION_WRITE_OFF", "USD") == written0 + 7_00
    again = await write_off_refused(api, approve, key, staff(api, "ann", APPROVER_ROLE))
    assert reason_of(again) == "RECONCILIATION_ITEM_NOT_OPEN"
    assert await balance(api, "RECONCILIATION_WRITE_OFF", "USD") == written0 + 7_00

    listed = await api.ops.ListReconciliationItems(
        ops_pb2.ListReconciliationItemsRequest(run_id=run_id), metadata=otto
    )
    [item] = [i for i in listed.items if i.item_key == key]
    assert (item.review_status, item.resolved_by, item.resolution, item.write_off_posting_id) == (
        "RESOLVED",
        "operator:amos",
        "Deriv fee, ticket 78",
        done.posting_id,  # type: ignore[attr-defined]
    )
    trail = [(actor, action) for actor, action, _ in await audit_of(api, key)]
    assert trail == [
        ("reconciliation", "reconciliation.item_queued"),
        ("operator:olga", "reconciliation.write_off_proposed"),
        ("operator:olga", "reconciliation.write_off_four_eyes_refused"),
        ("operator:amos", "reconciliation.write_off_rejected"),
        ("operator:olga", "reconciliation.write_off_proposed"),
        ("operator:amos", "reconciliation.write_off_approved"),
    ]
    *_, (_, _, approved) = await audit_of(api, key)
    assert (approved["proposed_by"], approved["approved_by"]) == ("operator:olga", "operator:amos")


async def test_two_approvers_at_once_book_the_write_off_once(api: Harness) -> None:
    stamp = str(uuid.uuid4().int)[:12]
    held = Item(
        key=f"deriv:{stamp}",
        source="deriv_statement",
        item_class=ItemClass.UNKNOWN_AT_PENPAY,
        detail="money out of the Deriv float with no PenPay transaction",
        provider_ref=stamp,
        provider_amount=Amount(4_00, "USD"),
        credit=False,
        float_kind="DERIV_AGENT_FLOAT",
    )
    await fund_test_floats(api.core)  # money can leave the float only if it holds some
    suspense0, written0 = (
        await balance(api, "SUSPENSE", "USD"),
        await balance(api, "RECONCILIATION_WRITE_OFF", "USD"),
    )
    await a_run(api, held)
    # money that left the float: SUSPENSE debited (credit-normal, so its balance goes down)
    assert await balance(api, "SUSPENSE", "USD") == suspense0 - 4_00
    await write_off_call(
        api, "ProposeReconciliationWriteOff", held.key, staff(api, "olga", "operator"), "fee"
    )
    outcomes = await asyncio.gather(
        *(
            write_off_call(api, "ApproveReconciliationWriteOff", held.key, staff(api, name, APPROVER_ROLE))
            for name in ("amos", "ann")
        ),
        return_exceptions=True,
    )
    refused_ones = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(refused_ones) == 1 and reason_of(refused_ones[0]) == "RECONCILIATION_ITEM_NOT_OPEN", outcomes
    assert await balance(api, "SUSPENSE", "USD") == suspense0
    assert await balance(api, "RECONCILIATION_WRITE_OFF", "USD") == written0 - 4_00
    approvals = [a for _, a, _ in await audit_of(api, held.key) if a == "reconciliation.write_off_approved"]
    assert len(approvals) == 1
