"""Pull Transactions lists one shortcode's payments: an operator whose paybill (C2B) shortcode is not
the STK push one must see both lists in reconciliation (real sockets: the Daraja simulator, MariaDB)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import grpc
import pytest

from application.reconciliation.service import Reconciler
from deriv_gateway.statement_client import GatewayDerivReads
from domain.wallet.money import Currency
from mpesa_adapter.balance_queries import ask_account_balances
from mpesa_adapter.client import DarajaClient
from mpesa_adapter.pull_reads import PullReads
from mpesa_adapter.reconciliation_reads import DarajaReconciliationReads
from mpesa_adapter.simulator.config import SANDBOX_PASSKEY, SANDBOX_SHORTCODE
from penpay.reconcile.wiring import ProviderReadsOverApis
from persistence.reconciliation import SqlReconciliationStore
from tests.mpesa_adapter.conftest import inbox_on
from tests.reconciliation.conftest import World, a_deposit_and_a_withdrawal
from tests.sagas.harness import B2C_SHORTCODE, MPESA_FLOAT_KES, running_stack
from workers.auditor import Auditor, AuditorConfig
from workers.memory_bus import InProcessBus

pytestmark = pytest.mark.integration

PAYBILL = "600777"  # the operator's separate paybill


@pytest.fixture
async def two_shortcodes(fresh_mariadb_url: str) -> AsyncIterator[World]:
    overrides = {
        "utility_balance": MPESA_FLOAT_KES.amount_minor // 100,
        "shortcodes": {SANDBOX_SHORTCODE: SANDBOX_PASSKEY, PAYBILL: SANDBOX_PASSKEY},
    }
    async with running_stack(fresh_mariadb_url, InProcessBus(), mpesa_overrides=overrides) as stack:
        await stack.fund_floats()
        config = dataclasses.replace(stack.daraja_config, c2b_shortcode=PAYBILL)
        daraja = DarajaClient(config)
        await daraja.register_c2b_urls()
        channel = grpc.aio.insecure_channel(stack.gateway.address)
        try:
            reads = ProviderReadsOverApis(
                DarajaReconciliationReads(
                    daraja,
                    stack.engine,
                    inbox=inbox_on(stack.engine, stack.clock),
                    clock=stack.clock,
                    pulls=PullReads(
                        daraja,
                        nominated_number="254708374149",
                        callback_url=f"{stack.callbacks.base_url}/pull",
                    ),
                    balance_wait=10.0,
                ),
                GatewayDerivReads(channel, timeout=10.0),
            )
            store = SqlReconciliationStore(stack.engine)
            yield World(stack, Reconciler(reads, store), store)
        finally:
            await channel.close()
            await daraja.close()


async def test_payments_to_a_separate_paybill_shortcode_are_pulled_too(two_shortcodes: World) -> None:
    world = two_shortcodes
    deposit, _ = await a_deposit_and_a_withdrawal(world.stack)  # STK: paid to the STK shortcode
    # no validation asked (not enabled on it): M-Pesa takes the money whatever PenPay says
    paid = await world.customer_pays_paybill("254711000111", 1_300, shortcode=PAYBILL, validation=False)

    report = await world.run()
    assert report.status == "SUCCEEDED", report
    items = {row.item_key: row for row in await world.items(report)}
    stk = [
        row
        for row in items.values()
        if row.source == "mpesa_c2b" and str(row.transaction_id) == str(deposit.id)
    ]
    assert [row.item_class for row in stk] == ["MATCHED"]
    # the paybill payment is M-Pesa's record under the paybill shortcode: read, never missed
    assert f"c2b:{paid['TransID']}" in items, sorted(items)


async def test_the_float_is_every_shortcode_s_balance_together(two_shortcodes: World) -> None:
    """Collections stay on the shortcode paid (STK, paybill), payouts leave the B2C one: each holds its
    own balance at Safaricom, and only together are they the ledger's one M-Pesa float."""
    world = two_shortcodes
    await a_deposit_and_a_withdrawal(world.stack)  # KES 2,600 in on the STK shortcode, 10 out of B2C
    await world.customer_pays_paybill("254711000111", 1_300, shortcode=PAYBILL, validation=False)
    held = world.stack.mpesa_sim.engine.books.utilities
    assert held[SANDBOX_SHORTCODE] == 2_600 and held[PAYBILL] == 1_300  # nothing swept

    report = await world.run()
    assert report.status == "SUCCEEDED", report
    (item,) = [row for row in await world.items(report) if row.source == "mpesa_float"]
    assert item.item_class == "MATCHED", item.detail
    for shortcode in (SANDBOX_SHORTCODE, PAYBILL, B2C_SHORTCODE):  # each asked, each named
        assert f"shortcode {shortcode} {held[shortcode] * 100}" in item.detail, item.detail


async def test_the_auditor_sums_every_shortcode_s_balance(two_shortcodes: World) -> None:
    """The continuous auditor asks Account Balance of each shortcode (over Daraja's API, answered at
    the callback endpoint) and compares their sum with the float, naming each shortcode's part."""
    world = two_shortcodes
    await a_deposit_and_a_withdrawal(world.stack)
    await world.customer_pays_paybill("254711000111", 1_300, shortcode=PAYBILL, validation=False)
    await world.run()  # the paybill payment nobody claimed is booked into the float (suspense)
    daraja = DarajaClient(dataclasses.replace(world.stack.daraja_config, c2b_shortcode=PAYBILL))
    inbox = inbox_on(world.stack.engine, world.stack.clock)

    async def ask() -> object:
        return await ask_account_balances(daraja, inbox, now=world.stack.clock.now())

    exact = AuditorConfig(float_tolerance=((Currency.KES, 0), (Currency.USD, 0)))
    auditor = Auditor(
        world.stack.engine, config=exact, ask_mpesa_balance=ask, mpesa_shortcodes=daraja.balance_shortcodes
    )
    try:
        await auditor.run_once()  # asks, after its run
        await world.stack.mpesa_sim.drain()
        verdicts = await auditor.run_once()
    finally:
        await daraja.close()
    (mpesa,) = [v for v in verdicts if v.check == "float_mpesa"]
    assert str(mpesa.status) == "OK", mpesa.summary
    held = world.stack.mpesa_sim.engine.books.utilities
    parts = mpesa.details["shortcodes"]
    assert {code: part["provider_cents"] for code, part in parts.items()} == {
        code: held[code] * 100 for code in (SANDBOX_SHORTCODE, PAYBILL, B2C_SHORTCODE)
    }
    assert mpesa.details["difference_cents"] == 0
