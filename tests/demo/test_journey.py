"""The demo journey (proving.demo.run_journey) against an EmbeddedStack started here, in this
process: the figures it returns agree with each other, with the quote, with the simulators'
books and with the consistency checker."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from penpay.embedded import EmbeddedStack
from penpay.settings import Settings
from persistence.consistency.check import check_consistency
from persistence.engine import create_engine
from proving.demo import DemoFailed, Endpoints, JourneyOptions, JourneyResult, render, run_journey
from proving.demo.own_stack import endpoints_of, own_stack_settings
from proving.simulator_books import fetch_simulator_books
from tests.clocks import the_processes_clock

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

OPTIONS = JourneyOptions(deposit_kes_cents=2_600_00, withdraw_usd_cents=10_00, wait_timeout=40)


@dataclass
class Stack:
    settings: Settings
    endpoints: Endpoints


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    state: Path = tmp_path_factory.mktemp("demo-stack")
    settings = own_stack_settings(Settings(app_env="testing"), state)
    embedded = EmbeddedStack(settings, state)
    try:
        await embedded.start()
        yield Stack(settings, endpoints_of(embedded.addresses))
    finally:
        await embedded.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def first_run(stack: Stack) -> JourneyResult:
    return await run_journey(stack.endpoints, OPTIONS, say=lambda _: None)


async def test_the_deposit_converts_at_the_quote_and_lands_on_deriv(
    stack: Stack, first_run: JourneyResult
) -> None:
    r = first_run
    assert r.deposit is not None and r.deposit.status == "completed"
    assert (r.deposit.amount_cents, r.deposit.currency) == (2_600_00, "KES")
    kes_per_usd = Fraction(stack.settings.fx_kes_per_usd_buy)
    assert r.deposit.converted_cents == math.floor(r.deposit.amount_cents / kes_per_usd)  # rounded down
    assert r.deposit.converted_currency == "USD"
    assert r.deriv_login_id == "CR90000001"
    assert r.deriv_after_deposit_cents - r.deriv_before_cents == r.deposit.converted_cents
    assert r.mpesa_after_deposit.charged_cents - r.mpesa_before.charged_cents == r.deposit.amount_cents


async def test_the_withdrawal_leaves_deriv_and_pays_the_phone_the_quoted_kes(
    stack: Stack, first_run: JourneyResult
) -> None:
    r = first_run
    assert r.withdrawal is not None and r.withdrawal.status == "completed"
    assert (r.withdrawal.amount_cents, r.withdrawal.currency) == (10_00, "USD")
    kes_per_usd = Fraction(stack.settings.fx_kes_per_usd_sell)
    assert r.withdrawal.converted_cents == math.floor(r.withdrawal.amount_cents * kes_per_usd)
    assert r.withdrawal.converted_cents == r.quoted_payout_cents
    assert r.deriv_after_deposit_cents - r.deriv_after_withdrawal_cents == r.withdrawal.amount_cents
    paid = r.mpesa_after_withdrawal.paid_cents - r.mpesa_after_deposit.paid_cents
    assert paid == r.withdrawal.converted_cents


async def test_the_payout_leaves_the_b2c_shortcode_and_the_deposit_lands_on_the_paybill(
    stack: Stack, first_run: JourneyResult
) -> None:
    """Two accounts of one organisation, as a real merchant has: the STK paybill collects, a B2C
    shortcode of its own pays out (PartyA of B2C), each as the settings name it."""
    s = stack.settings
    assert s.mpesa_b2c_shortcode != s.mpesa_shortcode
    assert first_run.mpesa_after_deposit.charged_by == (s.mpesa_shortcode,)
    assert first_run.mpesa_after_withdrawal.paid_from == (s.mpesa_b2c_shortcode,)


async def test_the_wallet_ledger_shows_both_legs_of_each_payment_and_nets_to_the_balance(
    first_run: JourneyResult,
) -> None:
    r = first_run
    assert r.deposit is not None and r.withdrawal is not None
    d, w = r.deposit, r.withdrawal
    lines = Counter((e.transaction_id, e.side, e.currency, e.amount_cents) for e in r.ledger)
    assert lines == Counter(
        {
            (d.transaction_id, "credit", "KES", d.amount_cents): 1,  # M-Pesa payment received
            (d.transaction_id, "debit", "KES", d.amount_cents): 1,  # converted
            (d.transaction_id, "credit", "USD", d.converted_cents): 1,
            (d.transaction_id, "debit", "USD", d.converted_cents): 1,  # transferred to Deriv
            (w.transaction_id, "credit", "USD", w.amount_cents): 1,  # Deriv account debited
            (w.transaction_id, "debit", "USD", w.amount_cents): 1,  # converted
            (w.transaction_id, "credit", "KES", w.converted_cents): 1,
            (w.transaction_id, "debit", "KES", w.converted_cents): 1,  # B2C payout
        }
    )
    for currency in ("KES", "USD"):
        net = sum(e.balance_change_cents for e in r.ledger if e.currency == currency)
        assert net == r.wallet_balances[currency] == 0
    # oldest first; compared as instants: the bridge's JSON gives 0, 3 or 6 fractional digits
    stamps = [datetime.fromisoformat(e.created_at) for e in r.ledger]
    assert stamps == sorted(stamps)
    report = "\n".join(render(r))
    assert f"Deriv {r.deriv_login_id}" in report and "(8 entries, oldest first)" in report


async def test_the_database_and_the_simulators_books_are_consistent_after_the_run(
    stack: Stack, first_run: JourneyResult
) -> None:
    books = await fetch_simulator_books(
        deriv_control_url=stack.endpoints.deriv_control_url, mpesa_control_url=stack.endpoints.mpesa_url
    )
    engine = create_engine(stack.settings.database_url, pool_size=1)
    try:
        # The cluster's processes stamp with the system clock: "stale" is judged on it too.
        report = await check_consistency(
            engine, now=the_processes_clock(), stale_after=timedelta(minutes=15), books=books
        )
    finally:
        await engine.dispose()
    assert report.ok, report.violations


async def test_a_second_run_on_the_same_stack_is_a_new_user_with_a_fresh_simulated_deriv_account(
    stack: Stack, first_run: JourneyResult
) -> None:
    lines: list[str] = []

    again = await run_journey(stack.endpoints, OPTIONS, say=lines.append)

    assert (again.email, again.phone) != (first_run.email, first_run.phone)
    assert again.deriv_login_id not in ("", first_run.deriv_login_id)
    assert any("bound to an earlier demo user" in line for line in lines)
    # The phone code went by SMS through the Africa's Talking simulator, and was read from its mailbox.
    assert "phone verified with the code from the SMS simulator's mailbox" in lines
    assert stack.endpoints.sms_url is not None
    async with aiohttp.ClientSession() as session:
        url = f"{stack.endpoints.sms_url}/__control__/messages"
        async with session.get(url, params={"to": again.phone}) as answer:
            bodies = [m["body"] for m in (await answer.json())["messages"]]
    assert any("verification code is" in body for body in bodies)
    assert again.withdrawal is not None and again.withdrawal.status == "completed"
    assert again.deriv_before_cents == 0  # a new simulated client starts empty
    assert again.deriv_after_withdrawal_cents == again.deposit.converted_cents - 10_00  # type: ignore[union-attr]


async def test_the_user_is_told_by_sms_of_the_completed_deposit_and_the_paid_withdrawal(
    stack: Stack, first_run: JourneyResult
) -> None:
    assert stack.endpoints.sms_url is not None
    wanted = ("deposit of KES 2,600.00 is complete: USD 20.00", "USD 10.00 withdrawn from Deriv")
    url = f"{stack.endpoints.sms_url}/__control__/messages"
    bodies: list[str] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(100):  # the notices follow the saga through the bus: bounded wait for them
            async with session.get(url, params={"to": first_run.phone}) as answer:
                bodies = [m["body"] for m in (await answer.json())["messages"]]
            if all(any(w in b for b in bodies) for w in wanted):
                break
            await asyncio.sleep(0.1)
    for w in wanted:
        assert sum(w in b for b in bodies) == 1, bodies


async def test_a_refused_step_stops_the_journey_with_the_bridges_problem(stack: Stack) -> None:
    too_much = JourneyOptions(deposit_kes_cents=400_000_00, wait_timeout=40)  # M-Pesa's cap is 250,000

    with pytest.raises(DemoFailed) as failed:
        await run_journey(stack.endpoints, too_much, say=lambda _: None)

    assert failed.value.step == "initiate deposit"
    assert failed.value.problem["status"] == 400
    reasons = [d.get("reason") for d in failed.value.problem["details"]]
    assert "MPESA_AMOUNT_OUT_OF_RANGE" in reasons
    assert "MPESA_AMOUNT_OUT_OF_RANGE" in failed.value.explain()


async def test_a_paybill_payment_with_the_deposit_reference_lands_on_deriv(
    stack: Stack, first_run: JourneyResult
) -> None:
    r = first_run
    assert r.paybill_business_number == (stack.settings.mpesa_c2b_shortcode or stack.settings.mpesa_shortcode)
    assert r.paybill_reference.startswith("PP") and len(r.paybill_reference) == 10
    assert r.paybill_deposit is not None and r.paybill_deposit.status == "completed"
    assert (r.paybill_deposit.amount_cents, r.paybill_deposit.currency) == (1_300_00, "KES")
    assert r.paybill_deposit.converted_cents == 10_00
    assert r.deriv_after_paybill_cents - r.deriv_after_withdrawal_cents == r.paybill_deposit.converted_cents
    assert r.paybill_deposit.statuses_seen[-1] == "completed"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{stack.endpoints.mpesa_url}/__control__/books") as answer:
            collected = [c for c in (await answer.json())["c2b"]["transactions"] if c["collected"]]
    assert [c["bill_ref"] for c in collected if c["trans_id"] == r.paybill_trans_id] == [r.paybill_reference]
    assert f"account {r.paybill_reference}" in "\n".join(render(r))
