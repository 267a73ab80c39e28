"""A set-up error on the queries that settle payments (an HTML 404 from a wrong base URL or proxy on
STK Query and Transaction Status): nothing is settled, the confirmer answers PENDING with an alert."""

from __future__ import annotations

import logging

import pytest

from mpesa_adapter.alerting import SETUP_ERROR_ALERT
from mpesa_adapter.callback_store import SENT
from mpesa_adapter.client import STK_QUERY, TRANSACTION_STATUS
from mpesa_adapter.confirmer import CallbackConfirmer, Verdict
from tests.mpesa_adapter.conftest import Harness, WrongProxy, phone

pytestmark = pytest.mark.integration


async def test_an_html_404_on_the_queries_settles_nothing_and_alerts(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="penpay.alerts")
    buyer, payee = phone(), phone()
    h.sim.add_fault("drop", api="stk", phone=buyer)
    h.sim.add_fault("drop", api="b2c", phone=payee)
    _, checkout = await h.push(buyer, 60)
    _, ocid = await h.payout(payee, 70)
    await h.drain()
    proxy = WrongProxy((STK_QUERY, TRANSACTION_STATUS))
    await proxy.start()
    try:
        assert h.sim.base_url is not None
        proxy.upstream = h.sim.base_url
        confirmer = CallbackConfirmer(h.make_client(base_url=proxy.base_url), h.store)

        assert (await confirmer.confirm_stk(checkout)).verdict == Verdict.PENDING
        assert (await confirmer.confirm_b2c(ocid)).verdict == Verdict.PENDING
    finally:
        await proxy.stop()

    assert proxy.refused == [STK_QUERY, TRANSACTION_STATUS]
    assert (await h.request_row(checkout)).status == SENT
    assert (await h.disbursement_row(ocid)).status == SENT
    alerts = [r for r in caplog.records if getattr(r, "alert", None) == SETUP_ERROR_ALERT]
    assert [r.correlation_id for r in alerts] == [checkout, ocid]  # type: ignore[attr-defined]
