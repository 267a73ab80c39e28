"""The double-entry ledger (PEC 2.3), gathered in one import path.

Each piece lives in its own module; this module is the stable address other layers use.
"""

from __future__ import annotations

from domain.wallet.account_kind import AccountKind, LedgerSide
from domain.wallet.events import BalanceChanged
from domain.wallet.ledger_account import LedgerAccount, system_account_code, user_wallet_code
from domain.wallet.ledger_entry import LedgerEntry, PostingLine, credit, debit
from domain.wallet.posting import Posting
from domain.wallet.posting_service import post

__all__ = [
    "AccountKind",
    "BalanceChanged",
    "LedgerAccount",
    "LedgerEntry",
    "LedgerSide",
    "Posting",
    "PostingLine",
    "credit",
    "debit",
    "post",
    "system_account_code",
    "user_wallet_code",
]
