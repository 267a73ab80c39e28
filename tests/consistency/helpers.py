"""A consistent run, booked through the real repositories, and ways to corrupt it.

The world: one user with
  - a COMPLETED deposit and a COMPLETED withdrawal,
  - a REVERSED withdrawal (B2C failed, USD refunded to Deriv),
  - a FAILED deposit (customer cancelled the STK push),
  - a deposit in NEEDS_REVIEW (paid by M-Pesa, Deriv refused the transfer),
  - a deposit still AWAITING_MPESA (fresh: not stale),
booked with the postings of the flows (persistence.consistency's docstring), on floats
funded by postings without a transaction (Dr float / Cr CAPITAL). The external ids
(CheckoutRequestID, receipts, Deriv transaction ids) are made up here unless the caller
passes the simulators' own (see test_books.py).

Corruptions go straight to the tables with a synchronous engine (foreign key checks off):
ledger_entries refuses UPDATE and DELETE, so the ledger is corrupted by inserting rows.
"""

from __future__ import annotations

import itertools
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from application.ledger import book
from domain.payments.attachments import MpesaRequest
from domain.payments.idempotency import IdempotencyKey
from domain.payments.transaction import Transaction
from domain.shared.ids import LedgerAccountId, TransactionId, UserId, new_uuid7
from domain.user.deriv_login_id import DerivLoginId
from domain.user.phone_number import PhoneNumber
from domain.wallet.account_kind import AccountKind as K
from domain.wallet.ledger_entry import PostingLine, credit, debit
from domain.wallet.locked_rate import LockedRate
from domain.wallet.money import Currency, Money
from domain.wallet.posting import Posting
from persistence.tables import ledger_accounts, ledger_entries, ledger_postings
from persistence.unit_of_work import SqlUnitOfWork
from tests.integration.ledger_helpers import insert_user

KES, USD = Currency.KES, Currency.USD
PHONE = "254712345678"  # the M-Pesa simulator pays and charges it
CANCELLING_PHONE = "254712341032"  # STK ResultCode 1032: cancelled by the user
B2C_FAILING_PHONE = "254712340001"  # B2C ResultCode 1
CLIENT = "CR90000001"  # the Deriv simulator's Alice
DEPOSIT_KES = 2_000  # x 0.0077 = 15.40 USD
WITHDRAWAL_USD = 20  # x 129.5 = 2,590 KES
REVERSED_USD = 12  # x 129.5 = 1,554 KES
DERIV_FLOAT_CENTS = 50_000_00  # the Deriv simulator's agent balance at its seed
MPESA_FLOAT_CENTS = 1_000_000_00
# When the run is booked, unless a test books it on another clock (a check run as a subprocess
# judges staleness on the system clock): every stamp of the run is this instant.
BOOKED_AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

_counter = itertools.count(1)


def _key(user_id: UserId, operation: str) -> IdempotencyKey:
    return IdempotencyKey.create(
        f"{operation}-{next(_counter)}-{secrets.token_hex(4)}", scope=str(user_id), operation=operation
    )


def _rate(base: Currency, quote: Currency, value: str, now: datetime) -> LockedRate:
    return LockedRate.create(
        quote_id=f"q-{next(_counter)}",
        base=base,
        quote=quote,
        rate=value,
        locked_at=now,
        expires_at=now + timedelta(minutes=5),
    )


def start_deposit(
    user_id: UserId, *, shillings: int = DEPOSIT_KES, phone: str = PHONE, now: datetime = BOOKED_AT
) -> Transaction:
    return Transaction.start_deposit(
        user_id=user_id,
        amount=Money(shillings * 100, KES),
        idempotency_key=_key(user_id, "deposit"),
        locked_rate=_rate(KES, USD, "0.0077", now),
        phone=PhoneNumber.mpesa(phone),
        deriv_login_id=DerivLoginId(CLIENT),
        now=now,
    )


def start_withdrawal(
    user_id: UserId, *, dollars: int = WITHDRAWAL_USD, phone: str = PHONE, now: datetime = BOOKED_AT
) -> Transaction:
    return Transaction.start_withdrawal(
        user_id=user_id,
        amount=Money(dollars * 100, USD),
        idempotency_key=_key(user_id, "withdrawal"),
        locked_rate=_rate(USD, KES, "129.5", now),
        phone=PhoneNumber.mpesa(phone),
        deriv_login_id=DerivLoginId(CLIENT),
        now=now,
    )


def fake_checkout_id() -> str:
    return f"ws_CO_{secrets.token_hex(8)}"


def fake_receipt() -> str:
    return secrets.token_hex(5).upper()


def fake_deriv_id() -> int:
    return 10_000_000_000 + secrets.randbelow(10**9)


def fake_ocid(tx: Transaction) -> str:
    return f"PENPAY-{tx.id.value.hex}"


@dataclass
class Accounts:
    wallet_kes: LedgerAccountId
    wallet_usd: LedgerAccountId
    fx_kes: LedgerAccountId
    fx_usd: LedgerAccountId
    mpesa_float: LedgerAccountId
    deriv_float: LedgerAccountId
    suspense_kes: LedgerAccountId
    suspense_usd: LedgerAccountId
    capital_kes: LedgerAccountId
    capital_usd: LedgerAccountId
    other_wallet_kes: LedgerAccountId


@dataclass
class World:
    engine: AsyncEngine
    url: str
    user_id: UserId
    accounts: Accounts
    deposit: Transaction
    withdrawal: Transaction
    reversed_withdrawal: Transaction
    failed_deposit: Transaction
    review_deposit: Transaction
    pending_deposit: Transaction
    extra: dict[str, Any] = field(default_factory=dict)


async def _accounts(engine: AsyncEngine, user_id: UserId, other_user: UserId) -> Accounts:
    async with SqlUnitOfWork(engine) as uow:

        async def get(kind: K, currency: Currency, user: UserId | None = None) -> LedgerAccountId:
            return (await uow.ledger.get_or_create_account(kind=kind, currency=currency, user_id=user)).id

        accounts = Accounts(
            wallet_kes=await get(K.USER_WALLET, KES, user_id),
            wallet_usd=await get(K.USER_WALLET, USD, user_id),
            fx_kes=await get(K.FX, KES),
            fx_usd=await get(K.FX, USD),
            mpesa_float=await get(K.MPESA_FLOAT, KES),
            deriv_float=await get(K.DERIV_AGENT_FLOAT, USD),
            suspense_kes=await get(K.SUSPENSE, KES),
            suspense_usd=await get(K.SUSPENSE, USD),
            capital_kes=await get(K.CAPITAL, KES),
            capital_usd=await get(K.CAPITAL, USD),
            other_wallet_kes=await get(K.USER_WALLET, KES, other_user),
        )
        await uow.commit()
    return accounts


def _posting(
    tx: Transaction | None,
    description: str,
    *legs: tuple[LedgerAccountId, LedgerAccountId, Money],
    now: datetime,
) -> Posting:
    lines: list[PostingLine] = []
    for debited, credited, amount in legs:
        lines += [debit(debited, amount), credit(credited, amount)]
    return Posting.create(lines=lines, description=description, transaction_id=tx.id if tx else None, now=now)


async def _store(engine: AsyncEngine, tx: Transaction | None, postings: list[Posting]) -> None:
    async with SqlUnitOfWork(engine) as uow:
        if tx is not None:
            await uow.transactions.add(tx)
        for posting in postings:
            await book(uow, posting)
        await uow.commit()


def _conv(tx: Transaction) -> Money:
    assert tx.converted_amount is not None
    return tx.converted_amount


def _deposit_received(a: Accounts, tx: Transaction, now: datetime) -> list[Posting]:
    return [
        _posting(tx, "deposit: M-Pesa payment received", (a.mpesa_float, a.wallet_kes, tx.amount), now=now),
        _posting(
            tx,
            "deposit: KES to USD",
            (a.wallet_kes, a.fx_kes, tx.amount),
            (a.fx_usd, a.wallet_usd, _conv(tx)),
            now=now,
        ),
    ]


def _deposit_transfer(a: Accounts, tx: Transaction, now: datetime) -> Posting:
    return _posting(tx, "deposit: Deriv transfer", (a.wallet_usd, a.deriv_float, _conv(tx)), now=now)


def _withdrawal_debited(a: Accounts, tx: Transaction, now: datetime) -> list[Posting]:
    return [
        _posting(tx, "withdrawal: Deriv account debited", (a.deriv_float, a.wallet_usd, tx.amount), now=now),
        _posting(
            tx,
            "withdrawal: USD to KES",
            (a.wallet_usd, a.fx_usd, tx.amount),
            (a.fx_kes, a.wallet_kes, _conv(tx)),
            now=now,
        ),
    ]


def _withdrawal_payout(a: Accounts, tx: Transaction, now: datetime) -> Posting:
    return _posting(tx, "withdrawal: B2C payout", (a.wallet_kes, a.mpesa_float, _conv(tx)), now=now)


@dataclass
class ExternalIds:
    """What M-Pesa and Deriv answered; made up unless the simulators' are given."""

    deposit_checkout: str = field(default_factory=fake_checkout_id)
    deposit_receipt: str = field(default_factory=fake_receipt)
    deposit_deriv_id: int = field(default_factory=fake_deriv_id)
    failed_checkout: str = field(default_factory=fake_checkout_id)
    review_checkout: str = field(default_factory=fake_checkout_id)
    review_receipt: str = field(default_factory=fake_receipt)
    pending_checkout: str = field(default_factory=fake_checkout_id)
    withdrawal_deriv_id: int = field(default_factory=fake_deriv_id)
    withdrawal_ocid: str | None = None
    withdrawal_receipt: str = field(default_factory=fake_receipt)
    reversed_deriv_id: int = field(default_factory=fake_deriv_id)
    reversed_ocid: str | None = None


@dataclass
class Plan:
    """The transactions, created (ids known) before any external call is made."""

    user_id: UserId
    deposit: Transaction
    withdrawal: Transaction
    reversed_withdrawal: Transaction
    failed_deposit: Transaction
    review_deposit: Transaction
    pending_deposit: Transaction


async def plan(engine: AsyncEngine, *, now: datetime) -> Plan:
    user_id = await insert_user(engine)
    return Plan(
        user_id=user_id,
        deposit=start_deposit(user_id, now=now),
        withdrawal=start_withdrawal(user_id, now=now),
        reversed_withdrawal=start_withdrawal(user_id, dollars=REVERSED_USD, phone=B2C_FAILING_PHONE, now=now),
        failed_deposit=start_deposit(user_id, shillings=500, phone=CANCELLING_PHONE, now=now),
        review_deposit=start_deposit(user_id, shillings=1_500, now=now),
        pending_deposit=start_deposit(user_id, shillings=300, now=now),
    )


def _stk(tx: Transaction, checkout_id: str, now: datetime) -> None:
    tx.stk_push_sent(
        MpesaRequest.sent(
            transaction_id=tx.id,
            checkout_request_id=checkout_id,
            merchant_request_id=f"m-{next(_counter)}",
            phone=tx.phone,
            amount=tx.amount,
            now=now,
        ),
        now=now,
    )


async def build_world(
    engine: AsyncEngine,
    url: str,
    the_plan: Plan | None = None,
    ids: ExternalIds | None = None,
    *,
    now: datetime = BOOKED_AT,
) -> World:
    """Book the whole consistent run (each transaction with its postings in one unit of work), every
    transaction's step stamped `now`."""
    p = the_plan or await plan(engine, now=now)
    ids = ids or ExternalIds()
    other_user = await insert_user(engine)
    a = await _accounts(engine, p.user_id, other_user)

    # The floats hold money before the run: funding postings, no transaction.
    await _store(
        engine,
        None,
        [
            _posting(
                None,
                "float funding: Deriv agent",
                (a.deriv_float, a.capital_usd, Money(DERIV_FLOAT_CENTS, USD)),
                now=now,
            ),
            _posting(
                None,
                "float funding: M-Pesa",
                (a.mpesa_float, a.capital_kes, Money(MPESA_FLOAT_CENTS, KES)),
                now=now,
            ),
        ],
    )

    # COMPLETED deposit
    d = p.deposit
    _stk(d, ids.deposit_checkout, now)
    d.mpesa_confirmed(mpesa_receipt_number=ids.deposit_receipt, amount=d.amount, raw_callback=None, now=now)
    postings = _deposit_received(a, d, now)
    d.deriv_transfer_sent(now=now)
    postings.append(_deposit_transfer(a, d, now))
    d.deriv_transfer_completed(deriv_transaction_id=ids.deposit_deriv_id, now=now)
    await _store(engine, d, postings)

    # COMPLETED withdrawal
    w = p.withdrawal
    w.withdrawal_code_sent(now=now)
    w.deriv_withdrawal_requested(now=now)
    w.deriv_withdrawal_done(deriv_transaction_id=ids.withdrawal_deriv_id, now=now)
    postings = _withdrawal_debited(a, w, now)
    w.mpesa_disbursement_sent(originator_conversation_id=ids.withdrawal_ocid or fake_ocid(w), now=now)
    postings.append(_withdrawal_payout(a, w, now))
    w.mpesa_disbursement_completed(
        transaction_receipt=ids.withdrawal_receipt, result_desc="ok", raw_result=None, now=now
    )
    await _store(engine, w, postings)

    # REVERSED withdrawal: B2C failed, the payout and the conversion reversed, USD refunded
    r = p.reversed_withdrawal
    r.withdrawal_code_sent(now=now)
    r.deriv_withdrawal_requested(now=now)
    r.deriv_withdrawal_done(deriv_transaction_id=ids.reversed_deriv_id, now=now)
    debited, converted = _withdrawal_debited(a, r, now)
    payout = _withdrawal_payout(a, r, now)
    r.mpesa_disbursement_sent(originator_conversation_id=ids.reversed_ocid or fake_ocid(r), now=now)
    r.mpesa_disbursement_failed(
        result_code=1, result_desc="insufficient utility balance", raw_result=None, now=now
    )
    refund = _posting(
        r, "withdrawal reversed: refund transfer to Deriv", (a.wallet_usd, a.deriv_float, r.amount), now=now
    )
    r.reverse("B2C payout failed; the USD was sent back to the user's Deriv account", now=now)
    await _store(
        engine,
        r,
        [
            debited,
            converted,
            payout,
            payout.reversal("withdrawal reversed: B2C payout failed", now=now),
            converted.reversal("withdrawal reversed: KES back to USD", now=now),
            refund,
        ],
    )

    # FAILED deposit: the customer cancelled the STK push
    f = p.failed_deposit
    _stk(f, ids.failed_checkout, now)
    f.mpesa_failed(result_code=1032, result_desc="Request cancelled by user", raw_callback=None, now=now)
    await _store(engine, f, [])

    # NEEDS_REVIEW deposit: paid, Deriv refused the transfer (its posting reversed)
    v = p.review_deposit
    _stk(v, ids.review_checkout, now)
    v.mpesa_confirmed(mpesa_receipt_number=ids.review_receipt, amount=v.amount, raw_callback=None, now=now)
    postings = _deposit_received(a, v, now)
    v.deriv_transfer_sent(now=now)
    transfer = _deposit_transfer(a, v, now)
    v.deriv_transfer_refused("ClientDisabled: the account is disabled", now=now)
    await _store(
        engine, v, [*postings, transfer, transfer.reversal("deposit: Deriv refused the transfer", now=now)]
    )

    # AWAITING_MPESA deposit, just started
    n = p.pending_deposit
    _stk(n, ids.pending_checkout, now)
    await _store(engine, n, [])

    return World(
        engine=engine,
        url=url,
        user_id=p.user_id,
        accounts=a,
        deposit=d,
        withdrawal=w,
        reversed_withdrawal=r,
        failed_deposit=f,
        review_deposit=v,
        pending_deposit=n,
    )


# --- corrupting the database directly -------------------------------------------------------


def sync_url(url: str) -> str:
    for driver in ("sqlite+aiosqlite", "mysql+aiomysql", "mysql+asyncmy"):
        url = url.replace(driver, {"sqlite+aiosqlite": "sqlite"}.get(driver, "mysql+pymysql"))
    return url


@contextmanager
def raw_sql(url: str) -> Iterator[sa.Connection]:
    """A plain connection in one transaction, foreign key checks off (SQLite's are off by default
    for a plain connection; MariaDB's are switched off for the session)."""
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.begin() as connection:
            if connection.dialect.name in ("mysql", "mariadb"):
                connection.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
            yield connection
    finally:
        engine.dispose()


Line = tuple[Any, str, int, str]  # (account id (UUID or typed id), side, cents, currency)


def _uuid(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    found: uuid.UUID = value.value if hasattr(value, "value") else value
    return found


def insert_posting(
    connection: sa.Connection,
    lines: list[Line],
    *,
    transaction_id: Any = None,
    entry_transaction_id: Any = "same",
    adjust_balances: bool = True,
    description: str = "corruption",
) -> uuid.UUID:
    """Insert a posting and its entries as given (balanced or not); with adjust_balances, move the
    stored balances the way the entries do, so only the intended rule breaks."""
    now = BOOKED_AT
    posting_id = new_uuid7()
    tx = _uuid(transaction_id)
    entry_tx = tx if entry_transaction_id == "same" else _uuid(entry_transaction_id)
    connection.execute(
        ledger_postings.insert(),
        {
            "id": posting_id,
            "transaction_id": tx,
            "description": description,
            "reverses_posting_id": None,
            "created_at": now,
        },
    )
    for account, side, cents, currency in lines:
        account_id = _uuid(account)
        connection.execute(
            ledger_entries.insert(),
            {
                "id": new_uuid7(),
                "posting_id": posting_id,
                "account_id": account_id,
                "side": side,
                "amount_cents": cents,
                "amount_currency": currency,
                "transaction_id": entry_tx,
                "created_at": now,
            },
        )
        if adjust_balances:
            normal = connection.execute(
                sa.select(ledger_accounts.c.normal_side).where(ledger_accounts.c.id == account_id)
            ).scalar_one_or_none()
            if normal is not None:
                delta = cents if side == normal else -cents
                connection.execute(
                    ledger_accounts.update()
                    .where(ledger_accounts.c.id == account_id)
                    .values(balance_cents=ledger_accounts.c.balance_cents + delta)
                )
    return posting_id


def tx_uuid(tx: Transaction | TransactionId) -> uuid.UUID:
    return tx.id.value if isinstance(tx, Transaction) else tx.value
