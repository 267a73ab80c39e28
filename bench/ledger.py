"""Ledger posting through PenPay's own unit of work, as a money movement books it.

One operation = one SqlUnitOfWork: lock two ledger accounts (SELECT ... FOR UPDATE in id order),
book a balanced posting (application.ledger.book: posting + 2 entries, balances written back with
their version check), complete the request's idempotency key, and commit, which writes the
BalanceChanged events to the outbox and their hash-chained audit rows. The accounts are drawn at
random, two out of a pool, like the raw-driver baseline; idempotency keys are claimed before the
measured window (the claim is a transaction of its own in the API, not part of the posting's).
"""

from __future__ import annotations

import os
import random
from datetime import timedelta

from sqlalchemy import insert

from application.ledger import book
from bench.load import Sample, timed
from domain.shared.clock import utc_now
from domain.shared.ids import LedgerAccountId, new_uuid7
from domain.wallet.account_kind import AccountKind
from domain.wallet.ledger_account import LedgerAccount
from domain.wallet.ledger_entry import credit, debit
from domain.wallet.money import Currency, Money
from domain.wallet.posting import Posting
from persistence.engine import create_engine
from persistence.ledger_repository import account_row
from persistence.tables import idempotency_keys, ledger_accounts
from persistence.unit_of_work import SqlUnitOfWork

SCOPE = "bench-user/penpay.bench.v1.Bench/Post"
AMOUNT = Money.of_minor(1000, Currency.KES)


class LedgerPostings:
    def __init__(self, url: str, accounts: int) -> None:
        self.engine = create_engine(url)  # the product's engine settings (a pool of 40, kept)
        self._accounts = accounts
        self.ids: list[LedgerAccountId] = []
        self._keys: list[str] = []
        self.inline_claims = 0

    async def setup(self) -> None:
        now = utc_now()
        rows = []
        for i in range(self._accounts):
            account = LedgerAccount(
                id=LedgerAccountId.new(),
                code=f"bench:{i}",
                kind=AccountKind.SUSPENSE,
                currency=Currency.KES,
                user_id=None,
                no_overdraft=False,
                created_at=now,
            )
            rows.append(account_row(account))
            self.ids.append(account.id)
        async with self.engine.begin() as connection:
            await connection.execute(insert(ledger_accounts), rows)

    async def claim_keys(self, count: int) -> None:
        """`count` idempotency keys claimed (IN_FLIGHT), as the API's claim leaves them."""
        now = utc_now()
        rows = [
            {
                "id": new_uuid7(),
                "scope": SCOPE,
                "key_hash": new_uuid7().hex * 2,
                "request_fingerprint": "f" * 64,
                "status": "IN_FLIGHT",
                "created_at": now,
                "expires_at": now + timedelta(hours=1),
            }
            for _ in range(count)
        ]
        async with self.engine.begin() as connection:
            for start in range(0, len(rows), 2000):
                await connection.execute(insert(idempotency_keys), rows[start : start + 2000])
        self._keys.extend(str(r["key_hash"]) for r in rows)

    async def _key(self) -> str:
        if self._keys:
            return self._keys.pop()
        from persistence.idempotency_store import SqlIdempotencyStore

        self.inline_claims += 1
        key = new_uuid7().hex * 2
        store = SqlIdempotencyStore(self.engine, SqlUnitOfWork(self.engine).clock)
        await store.claim(scope=SCOPE, key_hash=key, fingerprint="f" * 64)
        return key

    async def post_once(self) -> None:
        first, second = random.sample(self.ids, 2)
        key = await self._key()
        async with SqlUnitOfWork(self.engine, actor="bench") as uow:
            posting = Posting.create(
                lines=[debit(first, AMOUNT), credit(second, AMOUNT)], description="bench posting"
            )
            await book(uow, posting)
            await uow.complete_idempotency_key(
                scope=SCOPE, key_hash=key, response_code=0, response_body=b'{"ok":true}'
            )
            await uow.commit()

    async def run(self, concurrency: int, *, seconds: float, warmup: float) -> Sample:
        """Measured with this process's CPU per posting ("client"): where the time goes."""
        return await timed(
            concurrency, self.post_once, seconds=seconds, warmup=warmup, pids={"client": os.getpid()}
        )

    async def close(self) -> None:
        await self.engine.dispose()
