"""The simulator's books: accounts, balances, the ledger, executed transfers and the verification mailbox.

Every balance change is a ledger entry, and every transfer moves minor units between two accounts, so the
sum of all balances per currency changes only through explicit adjustments (opening balances included).
Pure state, no I/O: the engine reads `events` to feed balance/transaction streams.
"""

from __future__ import annotations

import random
import string
import uuid
from dataclasses import dataclass, field
from typing import Any

from .accounts import Account, SeedError, Token, parse_account, parse_token
from .money import format_amount, to_number

CODE_ALPHABET = string.ascii_letters + string.digits

SEED_LANES = 1000
LANE_WIDTH = 10**12


def first_transaction_id(seed: int, started_at: float) -> int:
    """Where a run's transaction ids start when the configuration does not fix it.

    Ids are unique in PenPay's database (the gateway journal, the ledger evidence), and several simulator
    runs may write to one database. The start time in microseconds keeps consecutive runs apart: a run
    that started earlier has used fewer ids than microseconds have passed since (it would need a million
    postings a second). The seed picks one of SEED_LANES lanes LANE_WIDTH apart, so runs started at the
    same moment with different seeds (mod SEED_LANES) are apart too. The result stays below 2**53 until
    about 2250, so a client reading JSON numbers as doubles still gets them exactly.
    """
    return 1 + (seed % SEED_LANES) * LANE_WIDTH + int(started_at * 1_000_000)


class IdSource:
    """Seeded identifiers, so a run with the same seed produces the same transcript."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"{seed}:ids")
        self._codes = random.Random(f"{seed}:codes")

    def uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def code(self) -> str:
        return "".join(self._codes.choice(CODE_ALPHABET) for _ in range(8))


@dataclass
class LedgerEntry:
    transaction_id: int
    loginid: str
    currency: str
    action_type: str  # deposit | withdrawal | adjustment
    amount: int  # signed minor units
    balance_after: int
    time: int
    longcode: str
    reference_id: int | None = None
    from_loginid: str | None = None
    to_loginid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "loginid": self.loginid,
            "currency": self.currency,
            "action_type": self.action_type,
            "amount": format_amount(self.amount, self.currency),
            "balance_after": format_amount(self.balance_after, self.currency),
            "transaction_time": self.time,
            "longcode": self.longcode,
            "reference_id": self.reference_id,
            "from_loginid": self.from_loginid,
            "to_loginid": self.to_loginid,
        }


@dataclass
class Transfer:
    transfer_id: int
    kind: str  # paymentagent_transfer | paymentagent_withdraw
    from_loginid: str
    to_loginid: str
    currency: str
    amount: int
    description: str
    remark: str
    reference: str
    time: int
    debit_transaction_id: int
    credit_transaction_id: int
    app_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "transfer_id": self.transfer_id,
            "kind": self.kind,
            "from_loginid": self.from_loginid,
            "to_loginid": self.to_loginid,
            "currency": self.currency,
            "amount": format_amount(self.amount, self.currency),
            "amount_minor": self.amount,
            "description": self.description,
            "remark": self.remark,
            "reference": self.reference,
            "time": self.time,
            "debit_transaction_id": self.debit_transaction_id,
            "credit_transaction_id": self.credit_transaction_id,
        }


@dataclass
class VerificationMail:
    code: str
    email: str
    type: str
    loginid: str | None
    issued_at: int
    expires_at: int
    status: str = "active"  # active | used | superseded
    url_parameters: dict[str, Any] = field(default_factory=dict)

    def state(self, now: float) -> str:
        if self.status == "active" and now >= self.expires_at:
            return "expired"
        return self.status

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "code": self.code,
            "email": self.email,
            "type": self.type,
            "loginid": self.loginid,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "status": self.state(now),
            "url_parameters": self.url_parameters,
        }


@dataclass
class BalanceEvent:
    loginid: str
    entry: LedgerEntry


class InsufficientFunds(Exception):
    pass


class Books:
    def __init__(self, seed: int, seed_data: dict[str, Any], first_txn: int = 10_000_000_001) -> None:
        self.ids = IdSource(seed)
        self.accounts: dict[str, Account] = {}
        self.tokens: dict[str, Token] = {}
        self.ledger: list[LedgerEntry] = []
        self.transfers: list[Transfer] = []
        self.mailbox: list[VerificationMail] = []
        self.events: list[BalanceEvent] = []
        self._next_txn = first_txn
        self._next_transfer = 1
        # per-currency sum of opening balances and adjustments: the books balance if totals equal this
        self.injected: dict[str, int] = {}
        self.load(seed_data, now=0)
        self.events.clear()

    @property
    def next_transaction_id(self) -> int:
        return self._next_txn

    # ---- accounts and tokens -------------------------------------------------------------------------

    def load(self, seed_data: dict[str, Any], now: int, replace: bool = False) -> list[str]:
        """Add (or, with replace, swap in) accounts and tokens. Opening balances count as injected money."""
        accounts, tokens = _parse_against(seed_data, self.accounts)
        if replace:
            for acc in self.accounts.values():
                self.injected[acc.currency] = self.injected.get(acc.currency, 0) - acc.balance
            self.accounts.clear()
            self.tokens.clear()
        for acc in accounts:
            old = self.accounts.get(acc.loginid)
            if old is not None:
                # updating an account keeps its ledger; a balance change is an adjustment
                delta = acc.balance - old.balance
                acc.balance = old.balance
                self.accounts[acc.loginid] = acc
                if delta:
                    self.adjust(acc.loginid, delta, "Balance set by the simulator control API", now)
            else:
                self.accounts[acc.loginid] = acc
                self.injected[acc.currency] = self.injected.get(acc.currency, 0) + acc.balance
        for tok in tokens:
            self.tokens[tok.token] = tok
        return [a.loginid for a in accounts]

    def account(self, loginid: str) -> Account | None:
        return self.accounts.get(loginid.upper())

    def siblings(self, account: Account) -> list[Account]:
        return sorted(
            (a for a in self.accounts.values() if a.user_id == account.user_id), key=lambda a: a.loginid
        )

    # ---- money movement ------------------------------------------------------------------------------

    def _post(
        self,
        account: Account,
        amount: int,
        action_type: str,
        now: int,
        longcode: str,
        reference_id: int | None = None,
        from_loginid: str | None = None,
        to_loginid: str | None = None,
    ) -> LedgerEntry:
        account.balance += amount
        entry = LedgerEntry(
            transaction_id=self._next_txn,
            loginid=account.loginid,
            currency=account.currency,
            action_type=action_type,
            amount=amount,
            balance_after=account.balance,
            time=now,
            longcode=longcode,
            reference_id=reference_id,
            from_loginid=from_loginid,
            to_loginid=to_loginid,
        )
        self._next_txn += 1
        self.ledger.append(entry)
        self.events.append(BalanceEvent(account.loginid, entry))
        return entry

    def move(
        self,
        kind: str,
        source: Account,
        target: Account,
        amount: int,
        description: str,
        remark: str,
        reference: str,
        now: int,
        app_id: int | None = None,
    ) -> Transfer:
        """Atomically debit source and credit target (same currency, amount in minor units)."""
        if amount <= 0 or source.currency != target.currency:
            raise ValueError("bad transfer")
        if source.balance < amount:
            raise InsufficientFunds(source.loginid)
        transfer_id = self._next_transfer
        self._next_transfer += 1
        debit = self._post(
            source, -amount, "withdrawal", now, remark, transfer_id, source.loginid, target.loginid
        )
        credit = self._post(
            target, amount, "deposit", now, remark, transfer_id, source.loginid, target.loginid
        )
        transfer = Transfer(
            transfer_id=transfer_id,
            kind=kind,
            from_loginid=source.loginid,
            to_loginid=target.loginid,
            currency=source.currency,
            amount=amount,
            description=description,
            remark=remark,
            reference=reference,
            time=now,
            debit_transaction_id=debit.transaction_id,
            credit_transaction_id=credit.transaction_id,
            app_id=app_id,
        )
        self.transfers.append(transfer)
        return transfer

    def adjust(self, loginid: str, amount: int, note: str, now: int) -> LedgerEntry:
        account = self.accounts[loginid]
        if account.balance + amount < 0:
            raise InsufficientFunds(loginid)
        self.injected[account.currency] = self.injected.get(account.currency, 0) + amount
        return self._post(account, amount, "adjustment", now, note)

    # ---- verification codes ------------------------------------------------------------------------

    def issue_code(
        self, email: str, type_: str, loginid: str | None, now: int, ttl: int, url_parameters: dict[str, Any]
    ) -> VerificationMail:
        for mail in self.mailbox:
            if mail.status == "active" and mail.type == type_ and mail.email.lower() == email.lower():
                mail.status = "superseded"
        mail = VerificationMail(
            code=self.ids.code(),
            email=email,
            type=type_,
            loginid=loginid,
            issued_at=now,
            expires_at=now + ttl,
            url_parameters=url_parameters,
        )
        self.mailbox.append(mail)
        return mail

    def consume_code(self, code: str, email: str, type_: str, now: float) -> str | None:
        """Check a code and delete it (whatever the outcome). Returns an error code, or None if valid."""
        mail = next((m for m in self.mailbox if m.code == code and m.state(now) == "active"), None)
        if mail is None:
            return "InvalidToken"
        mail.status = "used"
        if mail.type != type_:
            return "InvalidToken"
        if mail.email.lower() != email.lower():
            return "BadSession"
        return None

    # ---- queries -------------------------------------------------------------------------------------

    def statement(self, loginid: str) -> list[LedgerEntry]:
        return [e for e in self.ledger if e.loginid == loginid]

    def find_transfers(
        self,
        description_contains: str | None = None,
        kind: str | None = None,
        loginid: str | None = None,
        reference: str | None = None,
    ) -> list[Transfer]:
        result = []
        for t in self.transfers:
            if description_contains is not None and description_contains not in t.description:
                continue
            if kind is not None and t.kind != kind:
                continue
            if loginid is not None and loginid.upper() not in (t.from_loginid, t.to_loginid):
                continue
            if reference is not None and t.reference != reference:
                continue
            result.append(t)
        return result

    def summary(self) -> dict[str, Any]:
        totals: dict[str, int] = {}
        counts: dict[str, int] = {}
        for acc in self.accounts.values():
            totals[acc.currency] = totals.get(acc.currency, 0) + acc.balance
            counts[acc.currency] = counts.get(acc.currency, 0) + 1
        currencies = {}
        balanced = True
        for cur in sorted(set(totals) | set(self.injected)):
            total = totals.get(cur, 0)
            injected = self.injected.get(cur, 0)
            balanced = balanced and total == injected
            currencies[cur] = {
                "accounts": counts.get(cur, 0),
                "total": format_amount(total, cur),
                "total_minor": total,
                "injected": format_amount(injected, cur),
                "injected_minor": injected,
                "total_number": to_number(total, cur),
            }
        return {
            "currencies": currencies,
            "transfers": len(self.transfers),
            "ledger_entries": len(self.ledger),
            "balanced": balanced,
        }


def _parse_against(
    seed_data: dict[str, Any], existing: dict[str, Account]
) -> tuple[list[Account], list[Token]]:
    accounts = [parse_account(a) for a in seed_data.get("accounts", [])]
    tokens = [parse_token(t) for t in seed_data.get("tokens", [])]
    loginids = set(existing) | {a.loginid for a in accounts}
    for tok in tokens:
        if tok.loginid not in loginids:
            raise SeedError(f"token {tok.token!r} names unknown loginid {tok.loginid}")
    return accounts, tokens
