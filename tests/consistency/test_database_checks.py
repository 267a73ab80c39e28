"""check_consistency on the database alone: a consistent run is ok; each corruption is named.

Each corruption is a direct SQL write on a consistent run; the test asserts the exact rule
it breaks is reported (and, where the corruption breaks nothing else, that nothing else is).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.shared.ids import new_uuid7
from persistence.consistency.check import check_consistency
from persistence.consistency.report import Code, ConsistencyReport, WarningCode
from persistence.tables import (
    deriv_transfers,
    deriv_withdrawals,
    ledger_accounts,
    ledger_balance_deltas,
    mpesa_disbursements,
    mpesa_requests,
    transactions,
)
from tests.consistency.helpers import BOOKED_AT, World, build_world, insert_posting, raw_sql, tx_uuid

pytestmark = pytest.mark.integration

DEBIT, CREDIT = "DEBIT", "CREDIT"


async def check(world: World, *, now: datetime = BOOKED_AT) -> ConsistencyReport:
    """The check as of `now`: by default the instant the world was booked (nothing is stale yet)."""
    return await check_consistency(world.engine, now=now, stale_after=timedelta(minutes=15))


@pytest.fixture
async def world(engine: AsyncEngine, database_url: str) -> World:
    return await build_world(engine, database_url)


async def test_a_consistent_run_is_ok(world: World) -> None:
    report = await check(world)

    assert report.violations == []
    assert report.warnings == []
    assert report.unresolved == []
    assert report.ok
    assert report.needs_review == [
        (str(world.review_deposit.id), "Deriv refused the transfer: ClientDisabled: the account is disabled")
    ]
    assert report.counts_by_status == {
        "COMPLETED": 2,
        "REVERSED": 1,
        "FAILED": 1,
        "NEEDS_REVIEW": 1,
        "AWAITING_MPESA": 1,
    }
    assert report.counts_by_type["DEPOSIT"] == {
        "COMPLETED": 1,
        "FAILED": 1,
        "NEEDS_REVIEW": 1,
        "AWAITING_MPESA": 1,
    }
    for currency in ("KES", "USD"):
        sums = report.sums_by_currency[currency]
        assert sums["debit_cents"] == sums["credit_cents"] > 0
    # 50,000.00 funded, 15.40 sent to the user, 20.00 received, 12.00 received and refunded
    assert report.balances_by_kind["DERIV_AGENT_FLOAT USD"] == 50_000_00 - 15_40 + 20_00
    assert report.to_dict()["ok"] is True


async def test_a_transaction_left_in_flight_becomes_unresolved_after_the_threshold(world: World) -> None:
    later = await check(world, now=BOOKED_AT + timedelta(minutes=16))

    assert later.violations == []
    assert [(u.transaction_id, u.status) for u in later.unresolved] == [
        (str(world.pending_deposit.id), "AWAITING_MPESA")
    ]
    assert not later.ok


async def test_a_confirmed_stk_payment_without_receipt_is_a_warning_not_a_violation(world: World) -> None:
    with raw_sql(world.url) as sql:
        sql.execute(
            mpesa_requests.update()
            .where(mpesa_requests.c.transaction_id == tx_uuid(world.deposit))
            .values(mpesa_receipt_number=None)
        )

    report = await check(world)

    assert report.ok
    assert [(w.code, w.transaction_id) for w in report.warnings] == [
        (WarningCode.MPESA_CONFIRMED_WITHOUT_RECEIPT, str(world.deposit.id))
    ]


# --- corruptions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corruption:
    corrupt: Callable[[sa.Connection, World], object]
    code: Code
    # the transaction the violation must name (None: not checked)
    about: Callable[[World], object] | None = None
    # True: this corruption breaks no other rule, so the codes must be exactly {code}
    only: bool = True


def _extra_debit(sql: sa.Connection, w: World) -> None:
    insert_posting(sql, [(w.accounts.suspense_kes, DEBIT, 1_00, "KES")], adjust_balances=True)


def _balance_off(sql: sa.Connection, w: World) -> None:
    account = w.accounts.wallet_usd.value
    sql.execute(
        ledger_accounts.update()
        .where(ledger_accounts.c.id == account)
        .values(balance_cents=ledger_accounts.c.balance_cents + 1)
    )


def _pending_off(sql: sa.Connection, w: World) -> None:
    # a hot account's change waiting for the roll-up, one cent away from its posting's entries
    first = sql.execute(sa.select(sa.func.min(ledger_balance_deltas.c.id))).scalar_one()
    assert first is not None, "the world books hot accounts: some change must be pending"
    sql.execute(
        ledger_balance_deltas.update()
        .where(ledger_balance_deltas.c.id == first)
        .values(delta_cents=ledger_balance_deltas.c.delta_cents + 1)
    )


def _negative_wallet(sql: sa.Connection, w: World) -> None:
    # balanced, balances moved with it: only the overdraft rule breaks
    insert_posting(
        sql, [(w.accounts.wallet_kes, DEBIT, 100_00, "KES"), (w.accounts.suspense_kes, CREDIT, 100_00, "KES")]
    )


def _funding_to_suspense(sql: sa.Connection, w: World) -> None:
    # float funding booked the way it was before CAPITAL existed
    insert_posting(
        sql,
        [(w.accounts.mpesa_float, DEBIT, 500_00, "KES"), (w.accounts.suspense_kes, CREDIT, 500_00, "KES")],
        description="float funding: the old way",
    )


def _capital_against_fx(sql: sa.Connection, w: World) -> None:
    insert_posting(
        sql, [(w.accounts.capital_kes, DEBIT, 5_00, "KES"), (w.accounts.fx_kes, CREDIT, 5_00, "KES")]
    )


def _capital_for_a_transaction(sql: sa.Connection, w: World) -> None:
    # balanced, and the deposit's floats and wallets untouched: only the capital rule breaks
    insert_posting(
        sql,
        [(w.accounts.capital_kes, DEBIT, 5_00, "KES"), (w.accounts.fx_kes, CREDIT, 5_00, "KES")],
        transaction_id=w.deposit.id,
    )


def _float_against_fx(sql: sa.Connection, w: World) -> None:
    insert_posting(
        sql, [(w.accounts.mpesa_float, DEBIT, 7_00, "KES"), (w.accounts.fx_kes, CREDIT, 7_00, "KES")]
    )


def _ghost_account(sql: sa.Connection, w: World) -> None:
    ghost = uuid.uuid4()
    insert_posting(sql, [(ghost, DEBIT, 5_00, "KES"), (ghost, CREDIT, 5_00, "KES")])


def _entry_in_other_currency(sql: sa.Connection, w: World) -> None:
    insert_posting(
        sql,
        [(w.accounts.wallet_kes, DEBIT, 5_00, "USD"), (w.accounts.suspense_usd, CREDIT, 5_00, "USD")],
        adjust_balances=False,
    )


def _entry_without_its_postings_transaction(sql: sa.Connection, w: World) -> None:
    insert_posting(
        sql,
        [(w.accounts.suspense_kes, DEBIT, 5_00, "KES"), (w.accounts.suspense_kes, CREDIT, 5_00, "KES")],
        transaction_id=w.deposit.id,
        entry_transaction_id=None,
    )


def _entries_of_a_missing_transaction(sql: sa.Connection, w: World) -> None:
    insert_posting(
        sql,
        [(w.accounts.suspense_kes, DEBIT, 5_00, "KES"), (w.accounts.suspense_kes, CREDIT, 5_00, "KES")],
        transaction_id=new_uuid7(),
    )


def _debit_normal_wallet(sql: sa.Connection, w: World) -> None:
    sql.execute(
        ledger_accounts.update()
        .where(ledger_accounts.c.id == w.accounts.wallet_usd.value)
        .values(normal_side="DEBIT")
    )


def _update(
    table: sa.Table, tx_of: Callable[[World], object], id_column: str = "transaction_id", **values: object
) -> Callable[[sa.Connection, World], None]:
    def corrupt(sql: sa.Connection, w: World) -> None:
        tx_id = tx_of(w).id.value  # type: ignore[attr-defined]
        result = sql.execute(table.update().where(table.c[id_column] == tx_id).values(**values))
        assert result.rowcount == 1

    return corrupt


def _delete_payout(sql: sa.Connection, w: World) -> None:
    sql.execute(
        mpesa_disbursements.delete().where(mpesa_disbursements.c.transaction_id == tx_uuid(w.withdrawal))
    )


def _payout_on_a_deposit(sql: sa.Connection, w: World) -> None:
    now = BOOKED_AT
    sql.execute(
        mpesa_disbursements.insert(),
        {
            "transaction_id": tx_uuid(w.deposit),
            "originator_conversation_id": f"X-{secrets.token_hex(6)}",
            "conversation_id": None,
            "phone": "254712345678",
            "amount_cents": 100_00,
            "amount_currency": "KES",
            "status": "SENT",
            "created_at": now,
            "updated_at": now,
        },
    )


def _float_moved_for(tx_of: Callable[[World], object]) -> Callable[[sa.Connection, World], None]:
    def corrupt(sql: sa.Connection, w: World) -> None:
        insert_posting(
            sql,
            [(w.accounts.mpesa_float, DEBIT, 1_00, "KES"), (w.accounts.suspense_kes, CREDIT, 1_00, "KES")],
            transaction_id=tx_of(w).id,  # type: ignore[attr-defined]
        )

    return corrupt


def _refund_undone(sql: sa.Connection, w: World) -> None:
    amount = w.reversed_withdrawal.amount.amount_minor
    insert_posting(
        sql,
        [(w.accounts.deriv_float, DEBIT, amount, "USD"), (w.accounts.wallet_usd, CREDIT, amount, "USD")],
        transaction_id=w.reversed_withdrawal.id,
    )


def _wallet_left_owing(sql: sa.Connection, w: World) -> None:
    insert_posting(
        sql,
        [(w.accounts.suspense_usd, DEBIT, 1_00, "USD"), (w.accounts.wallet_usd, CREDIT, 1_00, "USD")],
        transaction_id=w.deposit.id,
    )


def _other_users_wallet(sql: sa.Connection, w: World) -> None:
    insert_posting(
        sql,
        [
            (w.accounts.other_wallet_kes, DEBIT, 1_00, "KES"),
            (w.accounts.other_wallet_kes, CREDIT, 1_00, "KES"),
        ],
        transaction_id=w.deposit.id,
    )


def _deposit(w: World) -> object:
    return w.deposit


def _withdrawal(w: World) -> object:
    return w.withdrawal


def _reversed(w: World) -> object:
    return w.reversed_withdrawal


def _failed(w: World) -> object:
    return w.failed_deposit


CORRUPTIONS = {
    "a posting with one debit": Corruption(_extra_debit, Code.LEDGER_UNBALANCED, only=False),
    "a posting with one debit, per posting": Corruption(_extra_debit, Code.POSTING_UNBALANCED, only=False),
    "a stored balance one cent off": Corruption(_balance_off, Code.BALANCE_MISMATCH),
    "a wallet below zero": Corruption(_negative_wallet, Code.NEGATIVE_BALANCE),
    # the balance (stored + pending) no longer matches the entries either
    "a pending change one cent off": Corruption(_pending_off, Code.UNROLLED_MISMATCH, only=False),
    "entries on a missing account": Corruption(_ghost_account, Code.UNKNOWN_ACCOUNT),
    "float funding booked to suspense": Corruption(_funding_to_suspense, Code.FUNDING_IN_SUSPENSE),
    "capital moved against FX": Corruption(_capital_against_fx, Code.CAPITAL_MISUSED),
    "capital moved for a transaction": Corruption(_capital_for_a_transaction, Code.CAPITAL_MISUSED, _deposit),
    "a USD entry on a KES account": Corruption(
        _entry_in_other_currency, Code.ENTRY_CURRENCY_MISMATCH, only=False
    ),
    "entries without their posting's transaction": Corruption(
        _entry_without_its_postings_transaction, Code.ENTRY_TRANSACTION_MISMATCH, _deposit
    ),
    "entries of a missing transaction": Corruption(
        _entries_of_a_missing_transaction, Code.UNKNOWN_TRANSACTION
    ),
    "a wallet made debit-normal": Corruption(_debit_normal_wallet, Code.ACCOUNT_MISCONFIGURED, only=False),
    "a completed deposit's transfer not confirmed": Corruption(
        _update(deriv_transfers, _deposit, status="SENT", deriv_transaction_id=None),
        Code.DEPOSIT_WITHOUT_TRANSFER,
        _deposit,
    ),
    "a completed deposit's transfer without Deriv id": Corruption(
        _update(deriv_transfers, _deposit, deriv_transaction_id=None), Code.DEPOSIT_WITHOUT_TRANSFER, _deposit
    ),
    "a completed deposit's STK payment failed": Corruption(
        _update(mpesa_requests, _deposit, status="FAILED"), Code.DEPOSIT_WITHOUT_MPESA_PAYMENT, _deposit
    ),
    "a completed withdrawal's Deriv debit failed": Corruption(
        _update(deriv_withdrawals, _withdrawal, status="FAILED"),
        Code.WITHDRAWAL_WITHOUT_DERIV_DEBIT,
        _withdrawal,
    ),
    "a reversed withdrawal's Deriv debit failed": Corruption(
        _update(deriv_withdrawals, _reversed, status="FAILED"), Code.WITHDRAWAL_WITHOUT_DERIV_DEBIT, _reversed
    ),
    "a completed withdrawal without B2C record": Corruption(
        _delete_payout, Code.WITHDRAWAL_WITHOUT_PAYOUT, _withdrawal
    ),
    "a completed withdrawal's B2C still sent": Corruption(
        _update(mpesa_disbursements, _withdrawal, status="SENT"), Code.WITHDRAWAL_WITHOUT_PAYOUT, _withdrawal
    ),
    "a Deriv transfer of another amount": Corruption(
        _update(deriv_transfers, _deposit, amount_cents=15_41), Code.EVIDENCE_AMOUNT_MISMATCH, _deposit
    ),
    "a B2C of another amount": Corruption(
        _update(mpesa_disbursements, _withdrawal, amount_cents=2_589_00),
        Code.EVIDENCE_AMOUNT_MISMATCH,
        _withdrawal,
    ),
    "a B2C record on a deposit": Corruption(_payout_on_a_deposit, Code.EVIDENCE_WRONG_FLOW, _deposit),
    "a failed deposit whose STK was paid": Corruption(
        _update(mpesa_requests, _failed, status="CONFIRMED", mpesa_receipt_number="RCPTPAID1"),
        Code.FAILED_WITH_MONEY,
        _failed,
    ),
    "a reversed withdrawal whose B2C was paid": Corruption(
        _update(mpesa_disbursements, _reversed, status="CONFIRMED"), Code.REVERSED_BUT_DELIVERED, _reversed
    ),
    "a completed deposit's float moved one shilling more": Corruption(
        _float_moved_for(_deposit), Code.FLOAT_MOVEMENT_MISMATCH, _deposit
    ),
    "a completed withdrawal's float moved one shilling less": Corruption(
        _float_moved_for(_withdrawal), Code.FLOAT_MOVEMENT_MISMATCH, _withdrawal
    ),
    "a failed deposit moved the float": Corruption(
        _float_moved_for(_failed), Code.FAILED_FLOAT_MOVED, _failed
    ),
    "a reversed withdrawal without its refund": Corruption(
        _refund_undone, Code.REVERSAL_WITHOUT_REFUND, _reversed, only=False
    ),
    "a completed deposit leaving the wallet owing": Corruption(
        _wallet_left_owing, Code.WALLET_NOT_SETTLED, _deposit
    ),
    "a deposit posting on another user's wallet": Corruption(
        _other_users_wallet, Code.WRONG_USER_WALLET, _deposit
    ),
    "a completed deposit marked FAILED": Corruption(
        _update(transactions, _deposit, status="FAILED", id_column="id"),
        Code.FAILED_WITH_MONEY,
        _deposit,
        only=False,
    ),
    "a completed deposit marked FAILED, in the ledger": Corruption(
        _update(transactions, _deposit, status="FAILED", id_column="id"),
        Code.FAILED_FLOAT_MOVED,
        _deposit,
        only=False,
    ),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
async def test_each_corruption_is_reported_by_its_rule(world: World, name: str) -> None:
    case = CORRUPTIONS[name]
    before = await check(world)
    assert before.ok and case.code not in before.codes()

    with raw_sql(world.url) as sql:
        case.corrupt(sql, world)
    report = await check(world)

    assert not report.ok
    assert case.code in report.codes(), [v.to_dict() for v in report.violations]
    if case.only:
        assert report.codes() == {case.code}, [v.to_dict() for v in report.violations]
    if case.about is not None:
        named = {v.transaction_id for v in report.violations if v.code == case.code}
        assert named == {str(case.about(world).id)}  # type: ignore[attr-defined]


async def test_a_float_moved_with_no_transaction_against_neither_capital_nor_suspense_is_a_warning(
    world: World,
) -> None:
    with raw_sql(world.url) as sql:
        _float_against_fx(sql, world)
    report = await check(world)

    assert report.violations == []
    assert report.warning_codes() == {WarningCode.FLOAT_ENTRY_UNEXPLAINED}
    assert "against FX" in report.warnings[0].message


async def test_a_reversed_deposit_whose_kes_refund_is_not_booked_is_a_warning(world: World) -> None:
    with raw_sql(world.url) as sql:
        sql.execute(
            transactions.update()
            .where(transactions.c.id == tx_uuid(world.review_deposit))
            .values(status="REVERSED")
        )

    report = await check(world)

    assert report.violations == []
    assert {w.code for w in report.warnings} == {WarningCode.REVERSED_DEPOSIT_KES_KEPT}
    assert {w.transaction_id for w in report.warnings} == {str(world.review_deposit.id)}


async def test_the_rows_listed_per_rule_are_capped(world: World) -> None:
    with raw_sql(world.url) as sql:
        sql.execute(ledger_accounts.update().values(balance_cents=ledger_accounts.c.balance_cents + 1))

    report = await check_consistency(
        world.engine, now=BOOKED_AT, stale_after=timedelta(minutes=15), max_rows=2
    )

    assert [v.code for v in report.violations] == [Code.BALANCE_MISMATCH] * 2
    assert WarningCode.TRUNCATED in report.warning_codes()
