from __future__ import annotations

from datetime import datetime

import pytest

from domain.shared.ids import LedgerAccountId, TransactionId, UserId
from domain.wallet.errors import (
    CurrencyMismatch,
    InvalidAmount,
    Overdraft,
    UnbalancedPosting,
    UnknownLedgerAccount,
)
from domain.wallet.ledger import (
    AccountKind,
    LedgerAccount,
    LedgerSide,
    Posting,
    credit,
    debit,
    post,
)
from domain.wallet.money import Currency, Money

pytestmark = pytest.mark.unit

KES = Currency.KES


def kes(text: str) -> Money:
    return Money.parse(text, KES)


def accounts_by_id(*accounts: LedgerAccount) -> dict[LedgerAccountId, LedgerAccount]:
    return {a.id: a for a in accounts}


def test_factories_set_codes_normal_sides_and_overdraft_rules() -> None:
    user_id = UserId.new()
    wallet = LedgerAccount.user_wallet(user_id, KES)
    assert wallet.code == f"user:{user_id}:KES"
    assert (wallet.normal_side, wallet.no_overdraft, wallet.balance_minor) == (LedgerSide.CREDIT, True, 0)
    float_ = LedgerAccount.system(AccountKind.MPESA_FLOAT, KES)
    assert float_.code == "system:mpesa_float:KES"
    assert (float_.normal_side, float_.no_overdraft) == (LedgerSide.DEBIT, True)
    assert LedgerAccount.system(AccountKind.DERIV_AGENT_FLOAT, Currency.USD).no_overdraft
    for kind in (AccountKind.FX, AccountKind.FEES, AccountKind.SUSPENSE):
        assert not LedgerAccount.system(kind, KES).no_overdraft
    # The house's capital is credit-normal and may go below zero (more taken out than put in).
    capital = LedgerAccount.system(AccountKind.CAPITAL, KES)
    assert capital.code == "system:capital:KES"  # the code migration 0022 opens
    assert (capital.normal_side, capital.no_overdraft) == (LedgerSide.CREDIT, False)


def test_a_user_wallet_is_made_only_through_its_own_factory() -> None:
    with pytest.raises(UnknownLedgerAccount):
        LedgerAccount.system(AccountKind.USER_WALLET, KES)


def test_deposit_received_raises_both_balances_in_their_normal_sense(now: datetime) -> None:
    float_ = LedgerAccount.system(AccountKind.MPESA_FLOAT, KES)
    wallet = LedgerAccount.user_wallet(UserId.new(), KES)
    posting = Posting.create(
        lines=[debit(float_.id, kes("1000")), credit(wallet.id, kes("1000"))],
        description="M-Pesa deposit received",
        transaction_id=TransactionId.new(),
        now=now,
    )
    events = post(posting, accounts_by_id(float_, wallet), now=now)
    assert float_.balance == kes("1000")  # PenPay holds it at M-Pesa
    assert wallet.balance == kes("1000")  # PenPay owes it to the user
    assert {(e.account_id, e.balance_minor, e.posting_id) for e in events} == {
        (float_.id, 100_000, posting.id),
        (wallet.id, 100_000, posting.id),
    }
    assert float_.version == wallet.version == 2


def test_unbalanced_posting_is_refused() -> None:
    a, b = LedgerAccountId.new(), LedgerAccountId.new()
    with pytest.raises(UnbalancedPosting):
        Posting.create(lines=[debit(a, kes("10")), credit(b, kes("9.99"))], description="off by a cent")


def test_balance_is_per_currency_not_in_total() -> None:
    a, b = LedgerAccountId.new(), LedgerAccountId.new()
    with pytest.raises(UnbalancedPosting):
        Posting.create(
            lines=[debit(a, kes("10")), credit(b, Money.parse("10", Currency.USD))],
            description="apples/oranges",
        )


def test_a_posting_needs_two_entries() -> None:
    with pytest.raises(UnbalancedPosting):
        Posting.create(lines=[debit(LedgerAccountId.new(), kes("10"))], description="alone")


def test_a_line_moves_a_positive_amount() -> None:
    with pytest.raises(InvalidAmount):
        debit(LedgerAccountId.new(), kes("0"))
    with pytest.raises(InvalidAmount):
        credit(LedgerAccountId.new(), kes("-1"))


def test_overdraft_is_refused_and_nothing_changes(now: datetime) -> None:
    wallet = LedgerAccount.user_wallet(UserId.new(), KES)
    suspense = LedgerAccount.system(AccountKind.SUSPENSE, KES)
    fx = LedgerAccount.system(AccountKind.FX, KES)
    posting = Posting.create(
        lines=[
            credit(suspense.id, kes("5")),
            debit(fx.id, kes("5")),
            debit(wallet.id, kes("5")),
            credit(fx.id, kes("5")),
        ],
        description="would overdraw the wallet",
    )
    before = [(a.balance_minor, a.version) for a in (wallet, suspense, fx)]
    with pytest.raises(Overdraft):
        post(posting, accounts_by_id(wallet, suspense, fx), now=now)
    assert [(a.balance_minor, a.version) for a in (wallet, suspense, fx)] == before


def test_clearing_accounts_may_go_negative(now: datetime) -> None:
    fx = LedgerAccount.system(AccountKind.FX, KES)
    fees = LedgerAccount.system(AccountKind.FEES, KES)
    post(
        Posting.create(lines=[debit(fx.id, kes("3")), credit(fees.id, kes("3"))], description="fee"),
        accounts_by_id(fx, fees),
    )
    assert fx.balance == kes("-3")
    assert fees.balance == kes("3")


def test_entry_currency_must_match_its_account(now: datetime) -> None:
    usd_wallet = LedgerAccount.user_wallet(UserId.new(), Currency.USD)
    fx = LedgerAccount.system(AccountKind.FX, KES)
    posting = Posting.create(
        lines=[debit(fx.id, kes("1")), credit(usd_wallet.id, kes("1"))], description="wrong"
    )
    with pytest.raises(CurrencyMismatch):
        post(posting, accounts_by_id(usd_wallet, fx))
    assert fx.balance_minor == 0


def test_unknown_account_is_refused_before_anything_changes() -> None:
    fx = LedgerAccount.system(AccountKind.FX, KES)
    posting = Posting.create(
        lines=[debit(fx.id, kes("1")), credit(LedgerAccountId.new(), kes("1"))], description="x"
    )
    with pytest.raises(UnknownLedgerAccount):
        post(posting, accounts_by_id(fx))
    assert fx.version == 1


def test_overdraft_rule_looks_at_the_posting_result_not_line_order(now: datetime) -> None:
    wallet = LedgerAccount.user_wallet(UserId.new(), KES)
    fx = LedgerAccount.system(AccountKind.FX, KES)
    posting = Posting.create(
        lines=[
            debit(wallet.id, kes("5")),
            credit(fx.id, kes("5")),
            credit(wallet.id, kes("5")),
            debit(fx.id, kes("5")),
        ],
        description="nets to zero",
    )
    post(posting, accounts_by_id(wallet, fx), now=now)
    assert wallet.balance_minor == 0


def test_reversal_mirrors_every_entry_and_points_back(now: datetime) -> None:
    float_ = LedgerAccount.system(AccountKind.MPESA_FLOAT, KES)
    wallet = LedgerAccount.user_wallet(UserId.new(), KES)
    accounts = accounts_by_id(float_, wallet)
    original = Posting.create(
        lines=[debit(float_.id, kes("50")), credit(wallet.id, kes("50"))], description="in"
    )
    post(original, accounts)
    reversal = original.reversal("undo")
    assert reversal.reverses == original.id
    assert reversal.id != original.id
    assert [(e.account_id, e.side, e.amount) for e in reversal.entries] == [
        (e.account_id, e.side.opposite(), e.amount) for e in original.entries
    ]
    post(reversal, accounts)
    assert float_.balance_minor == wallet.balance_minor == 0


def test_entries_belong_to_their_posting_and_transaction() -> None:
    tx_id = TransactionId.new()
    posting = Posting.create(
        lines=[debit(LedgerAccountId.new(), kes("1")), credit(LedgerAccountId.new(), kes("1"))],
        description="x",
        transaction_id=tx_id,
    )
    assert all(e.posting_id == posting.id and e.transaction_id == tx_id for e in posting.entries)
    assert len({e.id for e in posting.entries}) == 2


def test_only_wallets_and_guarded_accounts_money_leaves_are_held() -> None:
    from domain.wallet.posting_service import to_hold

    wallet = LedgerAccount.user_wallet(UserId.new(), KES)
    float_ = LedgerAccount.system(AccountKind.MPESA_FLOAT, KES)
    fx = LedgerAccount.system(AccountKind.FX, KES)
    accounts = accounts_by_id(wallet, float_, fx)
    paid_in = Posting.create(
        lines=[debit(float_.id, kes("5")), credit(wallet.id, kes("5"))], description="in"
    )
    paid_out = Posting.create(
        lines=[debit(wallet.id, kes("5")), credit(float_.id, kes("5"))], description="out"
    )
    to_fx = Posting.create(lines=[debit(wallet.id, kes("2")), credit(fx.id, kes("2"))], description="fx")

    assert to_hold([paid_in], accounts) == {wallet.id}  # money into the float: no order needed
    assert to_hold([paid_out], accounts) == {wallet.id, float_.id}
    assert to_hold([paid_in, paid_out], accounts) == {wallet.id}  # the float's net change is nil
    assert to_hold([to_fx], accounts) == {wallet.id}  # FX has no rule to check


def test_rolled_up_accounts_are_checked_not_changed_and_their_changes_returned() -> None:
    from domain.wallet.posting_service import RolledUpChange, post_all

    wallet = LedgerAccount.user_wallet(UserId.new(), KES)
    float_ = LedgerAccount.system(AccountKind.MPESA_FLOAT, KES)
    usd_fx = LedgerAccount.system(AccountKind.FX, Currency.USD)
    posting = Posting.create(
        lines=[debit(float_.id, kes("7")), credit(wallet.id, kes("7"))], description="in"
    )

    events, changes = post_all([posting], accounts_by_id(wallet, float_), rolled_up={float_.id})

    assert [(e.account_id, e.balance_minor) for e in events] == [(wallet.id, 700)]
    assert changes == [RolledUpChange(posting.id, float_.id, 700)]
    assert (float_.balance_minor, float_.version) == (0, 1)
    wrong = Posting.create(lines=[debit(usd_fx.id, kes("1")), credit(wallet.id, kes("1"))], description="x")
    with pytest.raises(CurrencyMismatch):  # a rolled-up account is still checked
        post_all([wrong], accounts_by_id(wallet, usd_fx), rolled_up={usd_fx.id})
    assert wallet.balance_minor == 700


def test_a_later_posting_refused_leaves_the_earlier_ones_unapplied() -> None:
    from domain.wallet.posting_service import post_all

    wallet = LedgerAccount.user_wallet(UserId.new(), KES)
    suspense = LedgerAccount.system(AccountKind.SUSPENSE, KES)
    fund = Posting.create(lines=[debit(suspense.id, kes("3")), credit(wallet.id, kes("3"))], description="in")
    out = Posting.create(lines=[debit(wallet.id, kes("4")), credit(suspense.id, kes("4"))], description="out")
    with pytest.raises(Overdraft):
        post_all([fund, out], accounts_by_id(wallet, suspense))
    assert (wallet.balance_minor, wallet.version, suspense.balance_minor) == (0, 1, 0)
