"""What one statement and one transaction cost in instructions through the raw driver (asyncmy)
and through SQLAlchemy Core on the product's engine (persistence.engine), counted by callgrind: the
floor under issue 19's CPU goal that no change to PenPay's own code moves.

    .venv/bin/python -m bench.statement_instructions                 # on the test server
    .venv/bin/python -m bench.statement_instructions --statements 43 --transactions 10

Each mode runs a loop of transactions of K single-row INSERTs (eight columns: two UUIDs, a
timestamp, strings and integers, as a ledger entry or an outbox row), each transaction on a
connection taken from the pool (SQLAlchemy) or held (the raw driver: the cheapest it can be) and
committed, once with K=1 and once with K=5; the difference is the cost of four statements, the rest
the transaction's. Counting is on (callgrind_control -i on) for the measured loop only, after a
warm-up. User space only: the kernel's share of each round trip is not in these counts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from typing import Any

from bench.instructions import callgrind_total, counting

WARMUP = 100
ROWS = 300
CREATE = (
    "CREATE TABLE IF NOT EXISTS bench_rows (id BINARY(16) PRIMARY KEY, tx BINARY(16), kind VARCHAR(32),"
    " amount_cents BIGINT, currency VARCHAR(3), created_at DATETIME(6), detail VARCHAR(255), n INT)"
)
INSERT = (
    "INSERT INTO bench_rows (id, tx, kind, amount_cents, currency, created_at, detail, n)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)


def _row(n: int) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "tx": uuid.uuid4(),
        "kind": "credit",
        "amount_cents": 130_000,
        "currency": "KES",
        "created_at": datetime.now(UTC),
        "detail": "a posting's description, about forty chars",
        "n": n,
    }


async def _child(mode: str, per_transaction: int, url: str) -> None:
    """Run under callgrind: WARMUP transactions, then ROWS counted ones."""
    from bench.scratch import connect_args

    args = connect_args(url, url.rsplit("/", 1)[-1])
    if mode == "raw":
        import asyncmy

        connection = await asyncmy.connect(**args)
        async with connection.cursor() as cursor:
            await cursor.execute(CREATE)

        async def transaction(n: int) -> None:
            for _ in range(per_transaction):
                r = _row(n)
                async with connection.cursor() as cursor:
                    values = (r["id"].bytes, r["tx"].bytes, r["kind"], r["amount_cents"], r["currency"])
                    await cursor.execute(
                        INSERT, (*values, r["created_at"].replace(tzinfo=None), r["detail"], n)
                    )
            await connection.commit()

    else:
        from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, insert, text

        from persistence.engine import connect, create_engine
        from persistence.types import UtcDateTime, UUIDv7

        table = Table(
            "bench_rows",
            MetaData(),
            Column("id", UUIDv7(), primary_key=True),
            Column("tx", UUIDv7()),
            Column("kind", String(32)),
            Column("amount_cents", BigInteger),
            Column("currency", String(3)),
            Column("created_at", UtcDateTime()),
            Column("detail", String(255)),
            Column("n", Integer),
        )
        statement = insert(table)
        # "text": the engine with asyncmy's statement cache off, every statement sent as text
        engine = create_engine(f"{url}?stmt_cache_size=0" if mode == "text" else url, pool_size=2)
        async with engine.begin() as setup:
            await setup.execute(text(CREATE))

        async def through_core(n: int) -> None:
            # as SqlUnitOfWork: a pooled connection, statements, COMMIT, back to the pool
            async with connect(engine) as connection:
                for _ in range(per_transaction):
                    await connection.execute(statement, _row(n))
                await connection.commit()

        # The lever "compiled" measures, not used by the product: SQLAlchemy writes the SQL once
        # (and owns the transaction), each statement goes straight to the driver's connection with
        # the columns' bind processors applied.
        compiled = statement.compile(dialect=engine.dialect)
        names = compiled.positiontup or []
        process: dict[str, Any] = dict(compiled._bind_processors)

        def bound(row: dict[str, Any]) -> tuple[Any, ...]:
            return tuple(process[k](row[k]) if k in process else row[k] for k in names)

        async def on_the_driver(n: int) -> None:
            async with connect(engine) as connection:
                await connection.begin()  # SQLAlchemy's transaction: its COMMIT below
                driver = (await connection.get_raw_connection()).driver_connection
                assert driver is not None
                for _ in range(per_transaction):
                    async with driver.cursor() as cursor:
                        await cursor.execute(compiled.string, bound(_row(n)))
                await connection.commit()

        transaction = on_the_driver if mode == "compiled" else through_core

    for n in range(WARMUP):
        await transaction(n)
    with counting(os.getpid()):
        for n in range(ROWS):
            await transaction(n)


def _count(mode: str, per_transaction: int, url: str) -> int:
    with tempfile.TemporaryDirectory(prefix="penpay-stmt-instr-") as tmp:
        out = os.path.join(tmp, "callgrind.out")
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "bench.statement_instructions",
                "--child",
                mode,
                "--per-transaction",
                str(per_transaction),
                "--url",
                url,
            ],
            capture_output=True,
            check=True,
        )
        return callgrind_total(out)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mysql-url", default="mysql+asyncmy://root@127.0.0.1:3306/")
    parser.add_argument("--statements", type=int, default=43, help="statements of a deposit (e2e group)")
    parser.add_argument("--transactions", type=int, default=10, help="its database transactions")
    parser.add_argument("--child", choices=("raw", "text", "sqlalchemy", "compiled"), help=argparse.SUPPRESS)
    parser.add_argument("--per-transaction", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(args.child, args.per_transaction, args.url))
        return 0
    from bench.scratch import scratch_database

    costs: dict[str, tuple[float, float]] = {}
    with scratch_database(args.mysql_url, migrated=False) as (_name, url):
        for mode in ("raw", "text", "sqlalchemy", "compiled"):
            one, five = (_count(mode, k, url) / ROWS for k in (1, 5))
            statement = (five - one) / 4
            costs[mode] = (statement, one - statement)
    n, t = args.statements, args.transactions
    for label, (per_statement, per_transaction) in (
        ("raw asyncmy (text protocol)", costs["raw"]),
        ("SQLAlchemy Core, statements as text", costs["text"]),
        ("SQLAlchemy Core, the engine (prepared)", costs["sqlalchemy"]),
        ("compiled once, sent on the driver", costs["compiled"]),
    ):
        deposit = (n * per_statement + t * per_transaction) / 1e6
        print(
            f"{label:<40} {per_statement / 1000:>5,.0f} k per INSERT, {per_transaction / 1000:>5,.0f} k "
            f"per transaction; {n} statements in {t} transactions: {deposit:.1f} M instructions"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
