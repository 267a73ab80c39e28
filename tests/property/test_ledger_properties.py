"""After any sequence of postings, accepted or refused, the books balance per currency and
no account that must not be overdrawn is below zero."""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from domain.shared.ids import LedgerAccountId, UserId
from domain.wallet.errors import Overdraft
from domain.wallet.ledger import AccountKind, LedgerAccount, LedgerSide, Posting, PostingLine, post
from domain.wallet.money import Currency, Money

pytestmark = pytest.mark.property

SYSTEM_KINDS = [k for k in AccountKind if k is not AccountKind.USER_WALLET]


def _books() -> dict[LedgerAccountId, LedgerAccount]:
    accounts = [LedgerAccount.system(kind, cur) for kind in SYSTEM_KINDS for cur in Currency]
    accounts += [LedgerAccount.user_wallet(UserId.new(), cur) for _ in range(2) for cur in Currency]
    return {a.id: a for a in accounts}


@st.composite
def split(draw: st.DrawFn, total: int) -> list[int]:
    """`total` as 1..3 positive parts."""
    if total == 1:
        return [1]
    parts = draw(st.integers(min_value=1, max_value=min(3, total)))
    cuts = sorted(
        draw(st.sets(st.integers(min_value=1, max_value=total - 1), min_size=parts - 1, max_size=parts - 1))
    )
    bounds = [0, *cuts, total]
    return [b - a for a, b in itertools.pairwise(bounds)]


@st.composite
def balanced_lines(draw: st.DrawFn, accounts: list[LedgerAccount]) -> list[tuple[int, LedgerSide, Money]]:
    """Lines as (account index, side, amount), balanced in each currency used."""
    lines: list[tuple[int, LedgerSide, Money]] = []
    for currency in draw(st.sets(st.sampled_from(list(Currency)), min_size=1, max_size=2)):
        total = draw(st.integers(min_value=1, max_value=50_000))
        candidates = [i for i, a in enumerate(accounts) if a.currency is currency]
        for side in LedgerSide:
            for part in draw(split(total)):
                lines.append((draw(st.sampled_from(candidates)), side, Money(part, currency)))
    return draw(st.permutations(lines))


def _signed_debit_balance(account: LedgerAccount) -> int:
    return account.balance_minor if account.normal_side is LedgerSide.DEBIT else -account.balance_minor


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_books_always_balance_and_protected_accounts_never_go_negative(data: st.DataObject) -> None:
    books = _books()
    ordered = list(books.values())
    recomputed: dict[LedgerAccountId, int] = defaultdict(int)
    refused = 0
    for _ in range(data.draw(st.integers(min_value=1, max_value=12))):
        lines = data.draw(balanced_lines(ordered))
        posting = Posting.create(
            lines=[PostingLine(ordered[i].id, side, amount) for i, side, amount in lines],
            description="random",
        )
        before = {a.id: (a.balance_minor, a.version) for a in ordered}
        try:
            post(posting, books)
        except Overdraft:
            refused += 1
            assert {a.id: (a.balance_minor, a.version) for a in ordered} == before
            continue
        for entry in posting.entries:
            recomputed[entry.account_id] += entry.signed_minor(books[entry.account_id].normal_side)

    event(f"refused postings: {min(refused, 3)}{'+' if refused >= 3 else ''}")
    per_currency: dict[Currency, int] = defaultdict(int)
    for account in ordered:
        per_currency[account.currency] += _signed_debit_balance(account)
        assert account.balance_minor == recomputed[account.id]
        if account.no_overdraft:
            assert account.balance_minor >= 0
    assert all(total == 0 for total in per_currency.values())
