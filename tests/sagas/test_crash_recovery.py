"""kill -9 of the saga worker at each step, then a restart: the outcome is the one without the crash.

The worker is a real `penpay worker saga` process (MariaDB, Redis Streams, both simulators and the
gateway over sockets); PENPAY_CRASH_AT makes it SIGKILL itself at a named checkpoint: before a
commit, after a commit but before its XACK (the handler has not returned), before a call, and
after a call before its answer is recorded. After the restart the test checks one M-Pesa charge,
one Deriv transfer (or withdrawal), one B2C payout per transaction, and the ledger balanced.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select

from application.payments.decisions import SagaPolicy, Step
from domain.payments.attachments import EvidenceStatus
from domain.payments.status import TransactionStatus as S
from domain.shared.ids import TransactionId
from persistence.tables import ledger_entries
from tests.sagas.harness import FAST_POLICY, PATIENT_QUERIES, Stack, running_stack
from workers.redis_bus import RedisStreamsBus

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """`penpay worker saga` as a child process."""

    def __init__(self, stack: Stack, stream_prefix: str, tmp: Path) -> None:
        cert = tmp / "daraja-cert.pem"
        cert.write_bytes(stack.daraja_config.certificate_pem())
        cfg = stack.daraja_config
        self.env = {
            **os.environ,
            "PENPAY_APP_ENV": "testing",
            "PENPAY_DATABASE_URL": stack.database_url,
            "PENPAY_REDIS_URL": os.environ.get("PENPAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
            "PENPAY_GATEWAY_ADDR": stack.gateway.address,
            "PENPAY_MPESA_BASE_URL": cfg.base_url,
            "PENPAY_MPESA_CONSUMER_KEY": cfg.consumer_key,
            "PENPAY_MPESA_CONSUMER_SECRET": cfg.consumer_secret,
            "PENPAY_MPESA_SHORTCODE": cfg.shortcode,
            "PENPAY_MPESA_PASSKEY": cfg.passkey,
            "PENPAY_MPESA_INITIATOR_NAME": cfg.initiator_name,
            "PENPAY_MPESA_INITIATOR_PASSWORD": cfg.initiator_password,
            "PENPAY_MPESA_CERT_FILE": str(cert),
            "PENPAY_MPESA_CALLBACK_BASE_URL": cfg.callback_base_url,
            "PENPAY_MPESA_CALLBACK_SECRET": cfg.callback_secret,
            "PENPAY_SAGA_CALL_GRACE": "1",
            "PENPAY_SAGA_STK_CALLBACK_WAIT": "2",
            "PENPAY_SAGA_B2C_RESULT_WAIT": "2",
            "PENPAY_SAGA_QUERY_INTERVAL": "0.5",
            "PENPAY_SWEEPER_INTERVAL": "0.3",
            "PENPAY_SWEEPER_MIN_AGE": "0.5",
            "PENPAY_SWEEPER_EVENT_GRACE": "1",
            "PENPAY_CRASH_AT": "",
        }
        self.args = [
            sys.executable, "-m", "penpay", "worker", "saga",
            "--stream-prefix", stream_prefix, "--claim-idle-ms", "1500",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tmp / "worker.log"

    def start(self, crash_at: str = "") -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.args, cwd=ROOT, env={**self.env, "PENPAY_CRASH_AT": crash_at}, stdout=out, stderr=out
            )

    async def killed_by_itself(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError("the worker did not reach its crash point:\n" + self.tail())
            await asyncio.sleep(0.05)
        return self.process.returncode

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@asynccontextmanager
async def _crash_stack(
    database_url: str, redis_url: str, key_prefix: str, policy: SagaPolicy = FAST_POLICY
) -> AsyncIterator[Stack]:
    bus = RedisStreamsBus.from_url(redis_url, prefix=key_prefix)
    try:
        # The worker sends the payouts: its B2C crash points are the ones under test here (the
        # ConfirmWithdrawal that sends its own is cut short in tests/sagas/test_initiator_payout.py)
        async with running_stack(database_url, bus, initiator_payouts=False, policy=policy) as running:
            await running.fund_floats()
            yield running
            await running.assert_consistent()
    finally:
        await bus.close()


@pytest.fixture
async def crash_stack(fresh_mariadb_url: str, redis_url: str, key_prefix: str) -> AsyncIterator[Stack]:
    async with _crash_stack(fresh_mariadb_url, redis_url, key_prefix) as running:
        yield running


@pytest.fixture
def worker(crash_stack: Stack, key_prefix: str, tmp_path: Path) -> Iterator[Worker]:
    process = Worker(crash_stack, key_prefix, tmp_path)
    yield process
    process.stop()


@pytest.fixture
async def patient_crash_stack(
    fresh_mariadb_url: str, redis_url: str, key_prefix: str
) -> AsyncIterator[Stack]:
    """`crash_stack` whose queries are a minute apart (the armed window with them): the worker
    reaches an armed query however late its wake-up comes, and no counted query runs in a test."""
    async with _crash_stack(fresh_mariadb_url, redis_url, key_prefix, PATIENT_QUERIES) as running:
        yield running


@pytest.fixture
def patient_worker(patient_crash_stack: Stack, key_prefix: str, tmp_path: Path) -> Iterator[Worker]:
    process = Worker(patient_crash_stack, key_prefix, tmp_path)
    process.env["PENPAY_SAGA_QUERY_INTERVAL"] = str(PATIENT_QUERIES.query_interval.total_seconds())
    yield process
    process.stop()


async def relay_until(
    stack: Stack, tx_id: TransactionId, worker: Worker, until: set[S], timeout: float = 30
) -> S:
    """Only the relay runs here; the worker process does the rest."""
    deadline = time.monotonic() + timeout
    while True:
        await stack.relay.relay_once()
        status = (await stack.get(tx_id)).status
        if status in until:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"stuck in {status}:\n{worker.tail()}")
        await asyncio.sleep(0.1)


async def assert_ledger_balanced(stack: Stack) -> None:
    async with stack.engine.connect() as connection:
        rows = await connection.execute(
            select(
                ledger_entries.c.amount_currency,
                ledger_entries.c.side,
                func.sum(ledger_entries.c.amount_cents),
            ).group_by(ledger_entries.c.amount_currency, ledger_entries.c.side)
        )
        sums: dict[str, dict[str, int]] = {}
        for currency, side, total in rows:
            sums.setdefault(currency, {})[side] = int(total)
    for currency, sides in sums.items():
        assert sides.get("DEBIT", 0) == sides.get("CREDIT", 0), f"{currency} unbalanced: {sides}"


async def charged_and_paid(stack: Stack, phone: str) -> tuple[int, int]:
    """(STK charges, B2C payouts) the M-Pesa simulator's books hold for this phone."""
    books = await stack.mpesa_books()
    phone = "".join(ch for ch in phone if ch.isdigit())
    charged = sum(1 for r in books["stk"]["transactions"] if r["phone"] == phone and r.get("charged"))
    paid = sum(1 for r in books["b2c"]["transactions"] if r["phone"] == phone and r.get("paid"))
    return charged, paid


DEPOSIT_POINTS = [
    "deposit.credit.before_commit",
    "deposit.credit.after_commit",
    "deposit.transfer.before_commit",
    "deposit.transfer.before_call",
    "deposit.transfer.after_call",
]


@pytest.mark.parametrize("crash_at", DEPOSIT_POINTS)
async def test_a_deposit_survives_a_worker_killed_at(
    crash_at: str, crash_stack: Stack, worker: Worker
) -> None:
    user = await crash_stack.user()
    worker.start(crash_at=crash_at)
    tx = await crash_stack.deposit(user, 1_300)
    await crash_stack.relay.relay_once()

    assert await worker.killed_by_itself() == -9

    worker.start()
    status = await relay_until(crash_stack, tx.id, worker, {S.COMPLETED, S.NEEDS_REVIEW, S.FAILED})
    assert status is S.COMPLETED, worker.tail()
    assert await crash_stack.deriv_transfers(str(tx.id)) == 1
    assert await charged_and_paid(crash_stack, tx.phone.value) == (1, 0)
    await assert_ledger_balanced(crash_stack)


WITHDRAWAL_POINTS = [
    ("withdrawal.b2c.before_commit", "254712345678", S.COMPLETED),
    ("withdrawal.b2c.before_call", "254712345678", S.COMPLETED),
    ("withdrawal.b2c.after_call", "254712345678", S.COMPLETED),
    ("withdrawal.refund.before_commit", "254712342040", S.REVERSED),
    ("withdrawal.refund.before_call", "254712342040", S.REVERSED),
    ("withdrawal.refund.after_call", "254712342040", S.REVERSED),
]


@pytest.mark.parametrize(("crash_at", "phone", "outcome"), WITHDRAWAL_POINTS)
async def test_a_withdrawal_survives_a_worker_killed_at(
    crash_at: str, phone: str, outcome: S, crash_stack: Stack, worker: Worker
) -> None:
    user = await crash_stack.user(phone=phone)
    worker.start(crash_at=crash_at)
    tx = await crash_stack.withdrawal(user, 10_00)
    await crash_stack.withdrawals.confirm_withdrawal(
        user_id=user, transaction_id=tx.id, verification_code=await crash_stack.withdrawal_code()
    )
    await crash_stack.relay.relay_once()

    assert await worker.killed_by_itself() == -9

    worker.start()
    status = await relay_until(
        crash_stack, tx.id, worker, {S.COMPLETED, S.REVERSED, S.NEEDS_REVIEW, S.FAILED}
    )
    assert status is outcome, worker.tail()
    refunds = await crash_stack.deriv_transfers(f"{tx.id}-refund")
    # the reference of the debit is a prefix of the refund's: one paymentagent_withdraw
    assert await crash_stack.deriv_transfers(str(tx.id)) - refunds == 1
    assert refunds == (1 if outcome is S.REVERSED else 0)
    assert await charged_and_paid(crash_stack, tx.phone.value) == (0, 1 if outcome is S.COMPLETED else 0)
    await assert_ledger_balanced(crash_stack)


@pytest.mark.parametrize(
    "crash_at", ["withdrawal.b2c_query.armed_before_call", "withdrawal.b2c_query.armed_after_call"]
)
async def test_an_armed_transaction_status_survives_a_worker_killed_at(
    crash_at: str, patient_crash_stack: Stack, patient_worker: Worker
) -> None:
    """The query the B2C result's commit armed is asked with nothing written: a worker killed before
    or after asking leaves nothing half done, and after the restart the query is asked again (or its
    answer, already on its way, completes the withdrawal), still uncounted."""
    stack, worker = patient_crash_stack, patient_worker
    user = await stack.user()
    worker.start(crash_at=crash_at)
    tx = await stack.withdrawal(user, 10_00)
    await stack.withdrawals.confirm_withdrawal(
        user_id=user, transaction_id=tx.id, verification_code=await stack.withdrawal_code()
    )

    async def relayed_until_killed() -> int:
        while worker.process is not None and worker.process.poll() is None:
            await stack.relay.relay_once()  # the B2C result's event reaches the worker
            await asyncio.sleep(0.1)
        return await worker.killed_by_itself()

    assert await asyncio.wait_for(relayed_until_killed(), 30) == -9
    query = await stack.step_record(tx.id, Step.B2C_QUERY)
    assert query is not None and query.attempts == 0  # armed by the result; the worker wrote nothing

    worker.start()
    status = await relay_until(stack, tx.id, worker, {S.COMPLETED, S.NEEDS_REVIEW, S.FAILED})
    assert status is S.COMPLETED, worker.tail()
    assert await stack.attempts(tx.id, Step.B2C_QUERY) == 0
    assert await charged_and_paid(stack, tx.phone.value) == (0, 1)
    await assert_ledger_balanced(stack)


async def test_the_credit_commits_with_the_transfer_intent(crash_stack: Stack, worker: Worker) -> None:
    """The credit, the agent float's reservation and the transfer's intent are one commit: a worker
    killed right after it left the deposit DERIV_TRANSFER_SENT, its transfer not yet sent."""
    user = await crash_stack.user()
    worker.start(crash_at="deposit.credit.after_commit")
    tx = await crash_stack.deposit(user, 1_300)
    await crash_stack.relay.relay_once()

    assert await worker.killed_by_itself() == -9
    committed = await crash_stack.get(tx.id)
    assert committed.status is S.DERIV_TRANSFER_SENT
    assert committed.deriv_transfer is not None
    assert await crash_stack.deriv_transfers(str(tx.id)) == 0

    worker.start()
    status = await relay_until(crash_stack, tx.id, worker, {S.COMPLETED, S.NEEDS_REVIEW, S.FAILED})
    assert status is S.COMPLETED, worker.tail()
    assert await crash_stack.deriv_transfers(str(tx.id)) == 1


async def test_the_stk_query_answer_commits_with_the_credit(crash_stack: Stack, worker: Worker) -> None:
    """The STK Query's answer is recorded in the credit's commit, not one of its own: a worker
    killed right before that commit left the evidence as the callback (or the push) left it, and
    the restarted worker asks again and credits once."""
    user = await crash_stack.user()
    worker.start(crash_at="deposit.credit.before_commit")
    tx = await crash_stack.deposit(user, 1_300)
    await crash_stack.relay.relay_once()

    assert await worker.killed_by_itself() == -9
    committed = await crash_stack.get(tx.id)
    assert committed.mpesa_request is not None
    assert committed.mpesa_request.status in (EvidenceStatus.SENT, EvidenceStatus.SUCCEEDED)
    assert committed.status is S.AWAITING_MPESA

    worker.start()
    status = await relay_until(crash_stack, tx.id, worker, {S.COMPLETED, S.NEEDS_REVIEW, S.FAILED})
    assert status is S.COMPLETED, worker.tail()
    credited = (await crash_stack.get(tx.id)).mpesa_request
    assert credited is not None and credited.status == EvidenceStatus.CONFIRMED
    assert await crash_stack.deriv_transfers(str(tx.id)) == 1
    assert await charged_and_paid(crash_stack, tx.phone.value) == (1, 0)
    await assert_ledger_balanced(crash_stack)
