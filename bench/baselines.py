"""Raw baselines, measured in the same run as the PenPay figures they are compared with.

- raw ledger tx: aiomysql straight, no SQLAlchemy: in one transaction, SELECT ... FOR UPDATE of two
  account rows (one statement each, in id order), UPDATE of both, and 5 inserts (posting, 2
  entries, outbox event, audit row) on scratch tables `bench_raw_*` of the scratch database;
  the same two-accounts-out-of-a-pool pattern the PenPay posting uses.
- grpcio unary echo: a generic bytes echo server in a process of its own.
- websockets echo: N frames in flight on one connection to an echo server of its own.
- redis-py XADD: one entry per call (hiredis parser), on a scratch stream deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
from datetime import UTC, datetime
from typing import Any

from bench.load import Sample, timed
from bench.scratch import connect_args
from domain.shared.ids import new_uuid7

RAW_TABLES = (
    """CREATE TABLE bench_raw_accounts (
        id BINARY(16) PRIMARY KEY, balance BIGINT NOT NULL, version INT NOT NULL,
        updated_at DATETIME(6) NOT NULL)""",
    """CREATE TABLE bench_raw_postings (
        id BINARY(16) PRIMARY KEY, description VARCHAR(255) NOT NULL, created_at DATETIME(6) NOT NULL)""",
    """CREATE TABLE bench_raw_entries (
        id BINARY(16) PRIMARY KEY, posting_id BINARY(16) NOT NULL, account_id BINARY(16) NOT NULL,
        side VARCHAR(6) NOT NULL, amount BIGINT NOT NULL, created_at DATETIME(6) NOT NULL,
        INDEX (account_id, created_at), INDEX (posting_id))""",
    """CREATE TABLE bench_raw_events (
        id BINARY(16) PRIMARY KEY, stream VARCHAR(64) NOT NULL, payload TEXT NOT NULL,
        occurred_at DATETIME(6) NOT NULL, published_at DATETIME(6) NULL,
        INDEX (published_at, occurred_at))""",
    """CREATE TABLE bench_raw_audit (
        id BIGINT AUTO_INCREMENT PRIMARY KEY, action VARCHAR(64) NOT NULL, subject_id VARCHAR(64) NOT NULL,
        details TEXT NOT NULL, row_hash CHAR(64) NOT NULL)""",
)


class RawLedger:
    """The raw-driver ledger-like transaction on its own scratch tables."""

    def __init__(self, url: str, database: str, accounts: int) -> None:
        self._args = connect_args(url, database)
        self._accounts = accounts
        self.ids: list[bytes] = []

    async def setup(self) -> None:
        import aiomysql

        connection = await aiomysql.connect(**self._args, autocommit=True)
        try:
            async with connection.cursor() as cursor:
                for ddl in RAW_TABLES:
                    await cursor.execute(ddl)
                now = datetime.now(UTC).replace(tzinfo=None)
                self.ids = sorted(new_uuid7().bytes for _ in range(self._accounts))
                await cursor.executemany(
                    "INSERT INTO bench_raw_accounts (id, balance, version, updated_at) "
                    "VALUES (%s, %s, 1, %s)",
                    [(i, 10**12, now) for i in self.ids],
                )
        finally:
            connection.close()

    async def run(self, concurrency: int, *, seconds: float, warmup: float) -> Sample:
        """Measured with this process's CPU per transaction ("client"), like the PenPay figure."""
        import os

        import aiomysql

        pool = await aiomysql.create_pool(
            **self._args, minsize=concurrency, maxsize=concurrency, autocommit=False
        )
        details = json.dumps({"amount": {"amount_cents": 1000, "currency": "KES"}, "note": "x" * 40})

        async def one() -> None:
            first, second = sorted(random.sample(self.ids, 2))
            now = datetime.now(UTC).replace(tzinfo=None)
            posting = new_uuid7().bytes
            async with pool.acquire() as connection, connection.cursor() as cursor:
                try:
                    for account, delta in ((first, -1000), (second, 1000)):
                        await cursor.execute(
                            "SELECT id, balance, version FROM bench_raw_accounts WHERE id = %s FOR UPDATE",
                            (account,),
                        )
                        _id, balance, version = await cursor.fetchone()
                        await cursor.execute(
                            "UPDATE bench_raw_accounts SET balance = %s, version = %s, updated_at = %s "
                            "WHERE id = %s AND version = %s",
                            (balance + delta, version + 1, now, account, version),
                        )
                    await cursor.execute(
                        "INSERT INTO bench_raw_postings (id, description, created_at) VALUES (%s, %s, %s)",
                        (posting, "bench posting", now),
                    )
                    for account, side in ((first, "DEBIT"), (second, "CREDIT")):
                        await cursor.execute(
                            "INSERT INTO bench_raw_entries (id, posting_id, account_id, side, amount, "
                            "created_at) VALUES (%s, %s, %s, %s, %s, %s)",
                            (new_uuid7().bytes, posting, account, side, 1000, now),
                        )
                    await cursor.execute(
                        "INSERT INTO bench_raw_events (id, stream, payload, occurred_at) "
                        "VALUES (%s, %s, %s, %s)",
                        (new_uuid7().bytes, "penpay.wallet", details, now),
                    )
                    await cursor.execute(
                        "INSERT INTO bench_raw_audit (action, subject_id, details, row_hash) "
                        "VALUES (%s, %s, %s, %s)",
                        ("BalanceChanged", posting.hex(), details, secrets.token_hex(32)),
                    )
                    await connection.commit()
                except BaseException:
                    await connection.rollback()
                    raise

        try:
            return await timed(concurrency, one, seconds=seconds, warmup=warmup, pids={"client": os.getpid()})
        finally:
            pool.close()
            await pool.wait_closed()


async def grpc_echo(
    addr: str, concurrency: int, payload: bytes, *, seconds: float, warmup: float, server_pid: int
) -> Sample:
    import grpc

    from bench.roles import ECHO_METHOD

    async with grpc.aio.insecure_channel(addr) as channel:
        call = channel.unary_unary(ECHO_METHOD)

        async def one() -> None:
            await call(payload)

        return await timed(concurrency, one, seconds=seconds, warmup=warmup, pids={"server": server_pid})


async def ws_echo(
    url: str,
    concurrency: int,
    frame: dict[str, Any],
    *,
    seconds: float,
    warmup: float,
    server_pid: int,
    compression: bool = False,
) -> Sample:
    """`concurrency` frames in flight on one connection, correlated by req_id (as the gateway does)."""
    from websockets.asyncio.client import connect

    async with connect(url, compression="deflate" if compression else None, max_queue=None, proxy=None) as ws:
        waiters: dict[int, asyncio.Future[None]] = {}
        counter = iter(range(1, 1 << 62))

        async def reader() -> None:
            async for text in ws:
                fut = waiters.pop(json.loads(text)["req_id"], None)
                if fut is not None:
                    fut.set_result(None)

        reader_task = asyncio.create_task(reader())

        async def one() -> None:
            req_id = next(counter)
            fut = asyncio.get_running_loop().create_future()
            waiters[req_id] = fut
            await ws.send(json.dumps({**frame, "req_id": req_id}))
            await fut

        try:
            return await timed(concurrency, one, seconds=seconds, warmup=warmup, pids={"server": server_pid})
        finally:
            reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader_task


async def redis_xadd(redis_url: str, concurrency: int, *, seconds: float, warmup: float) -> Sample:
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_url)
    stream = f"penpay-bench:{secrets.token_hex(4)}:xadd"
    fields: dict[Any, Any] = {  # redis-py types the mapping invariantly
        "event_type": "BalanceChanged",
        "payload": json.dumps({"account_id": str(new_uuid7()), "balance": 100000, "currency": "KES"}),
    }

    async def one() -> None:
        await client.xadd(stream, fields, maxlen=10_000, approximate=True)

    try:
        return await timed(concurrency, one, seconds=seconds, warmup=warmup)
    finally:
        await client.delete(stream)
        await client.aclose()
