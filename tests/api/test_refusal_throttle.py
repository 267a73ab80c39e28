"""A token hammering a forbidden RPC: the first refusal is audited at once, the rest of the minute
only counted, and the count goes into the next `access.refused` row (or the flush at stop).
Over a real server on MariaDB and SQLite; the clock is the harness's, moved by hand."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import grpc
import pytest
from sqlalchemy import select

from penpay.ops.v1 import ops_pb2
from penpay_api.auth import VIEWER_ROLE
from persistence.audit import verify_chain
from persistence.tables import audit_logs

from .conftest import Harness, bearer

pytestmark = pytest.mark.integration

PROPOSE = "/penpay.ops.v1.OpsService/ProposeReviewAction"


async def refused_rows(api: Harness) -> list[Any]:
    async with api.core.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(audit_logs.c.actor, audit_logs.c.subject_id, audit_logs.c.details)
                .where(audit_logs.c.action == "access.refused")
                .order_by(audit_logs.c.id)
            )
        ).all()
        assert (await verify_chain(connection)).ok
    return list(rows)


async def propose_as(api: Harness, metadata: tuple[tuple[str, str], ...]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.ops.ProposeReviewAction(
            ops_pb2.ProposeReviewActionRequest(
                transaction_id="0" * 32, kind=ops_pb2.REVIEW_ACTION_KIND_RESOLVE_COMPLETED, reason="x"
            ),
            metadata=metadata,
        )
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED  # every call is refused


async def test_hammering_a_forbidden_rpc_writes_one_row_a_window_with_the_count(api: Harness) -> None:
    viewer, _ = api.tokens.issue_operator_token(operator="vera", now=api.clock.now(), roles=[VIEWER_ROLE])
    other, _ = api.tokens.issue_operator_token(operator="wes", now=api.clock.now(), roles=[VIEWER_ROLE])
    for _ in range(25):
        await propose_as(api, bearer(viewer))
    await propose_as(api, bearer(other))  # another person's refusal is a key of its own

    rows = await refused_rows(api)
    assert [(r.actor, r.subject_id) for r in rows] == [("operator:vera", PROPOSE), ("operator:wes", PROPOSE)]
    first = json.loads(rows[0].details)
    assert first["reason"] == "ROLE_REQUIRED" and first["suppressed_before"] == 0  # the first, at once

    api.clock.advance(timedelta(seconds=61))  # the window ended: the next refusal is a row again
    await propose_as(api, bearer(viewer))
    rows = await refused_rows(api)
    assert len(rows) == 3 and rows[2].actor == "operator:vera"
    assert json.loads(rows[2].details)["suppressed_before"] == 24  # the 24 not written on their own

    for _ in range(3):
        await propose_as(api, bearer(viewer))
    await api.api.close()  # stopping writes the counts still held
    rows = await refused_rows(api)
    assert len(rows) == 4
    last = json.loads(rows[3].details)
    assert (rows[3].actor, last["suppressed_before"], last["flushed"]) == ("operator:vera", 3, True)
