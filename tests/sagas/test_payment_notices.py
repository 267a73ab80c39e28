"""Payment notices: consumers of the outbox's status changes (MariaDB, Redis Streams, the
Africa's Talking simulator over a real socket), effectively once through their inbox."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from domain.payments.status import TransactionStatus as S
from domain.shared.ids import UserId
from domain.user.kyc_snapshot import KycSnapshot
from persistence import inbox
from persistence.tables import audit_logs, audit_pending
from persistence.unit_of_work import SqlUnitOfWork
from security.notify import DevelopmentNotifier, SplitNotifier
from security.pii import _DEV_KEY, DEV_KEY_ID, PiiCipher
from sms_adapter.africastalking import AfricasTalkingSms
from sms_adapter.simulator import DEFAULT_API_KEY, DEFAULT_USERNAME, SmsSimulator
from tests.sagas.harness import Stack
from workers.consumer import EventConsumer, Outcome
from workers.notifications import notification_consumers

pytestmark = pytest.mark.integration


@dataclass
class Notices:
    sms: SmsSimulator
    email: DevelopmentNotifier
    consumers: list[EventConsumer]

    async def drain(self, stack: Stack) -> list[Outcome]:
        """Relay what the outbox holds, then process until nothing is left to read or claim."""
        await stack.relay.drain()
        seen: list[Outcome] = []
        while True:
            batch = [o for c in self.consumers for o in await c.process_once()]
            if not batch:
                return seen
            seen += batch


@pytest.fixture
async def notices(stack: Stack) -> AsyncIterator[Notices]:
    async with SmsSimulator() as simulator:
        at = AfricasTalkingSms(
            username=DEFAULT_USERNAME,
            api_key=DEFAULT_API_KEY,
            sender_id="PENPAY",
            base_url=simulator.base_url,
        )
        email = DevelopmentNotifier()
        consumers = notification_consumers(
            stack.bus,
            stack.engine,
            SplitNotifier(sms=at, email=email),
            cipher=None,  # the harness writes users under the development key
            block_ms=10,
            claim_idle_ms=0,
            seal_delay=0.05,
        )
        yield Notices(simulator, email, consumers)
        await at.aclose()


async def verified_user(stack: Stack, phone: str = "254712345678") -> UserId:
    user_id = await stack.user(phone=phone)
    async with stack.uow() as uow:
        user = await uow.users.get(user_id)
        assert user is not None
        user.verify_email()
        await uow.users.save(user)
        await uow.commit()
    return user_id


async def notices_audited(stack: Stack, tx_id: str, *, sealed_only: bool = False) -> int:
    async with stack.engine.connect() as connection:
        total = 0
        for table in (audit_logs,) if sealed_only else (audit_logs, audit_pending):
            statement = select(func.count()).where(
                table.c.subject_id == tx_id, table.c.action == "PaymentNoticeSent"
            )
            total += int((await connection.execute(statement)).scalar_one())
        return total


async def test_exactly_one_sms_and_one_email_per_completed_deposit_even_when_delivered_twice(
    stack: Stack, notices: Notices
) -> None:
    user = await verified_user(stack)
    tx = await stack.deposit(user, 2_600)  # USD 20.00 at 130 KES/USD
    assert (await stack.settle(tx.id)).status is S.COMPLETED

    first = await notices.drain(stack)
    # COMPLETED, once for both channels; the status changes on the way there make no notice, and
    # are acknowledged without an inbox row
    assert [o.status for o in first].count("handled") == 1
    assert [o.status for o in first].count("ignored") >= 3

    [sms] = notices.sms.sent_to("+254712345678")
    assert "deposit of KES 2,600.00 is complete: USD 20.00 credited to Deriv" in sms.body
    assert sms.sender == "PENPAY"
    [email] = notices.email.sent
    assert email.to.endswith("@example.com") and "KES 2,600.00" in email.body and "USD 20.00" in email.body
    assert str(tx.id) in email.body

    # The COMPLETED status change delivered again (a replay, a redelivery after a lost ack).
    completed = [
        fields
        for _, fields in await stack.bus.read_all("penpay.payments")
        if fields["event_type"] == "TransactionStatusChanged"
        and '"to_status":"COMPLETED"' in fields["payload"]
    ]
    assert len(completed) == 1
    await stack.bus.publish([("penpay.payments", completed[0]), ("penpay.payments", completed[0])])
    again = await notices.drain(stack)

    assert [o.status for o in again] == ["duplicate"] * 2
    assert len(notices.sms.sent_to("+254712345678")) == 1
    assert len(notices.email.sent) == 1
    assert await notices_audited(stack, str(tx.id)) == 2
    # No seal is waited on per notice: the deferred one chains both records shortly after.
    for _ in range(250):
        if await notices_audited(stack, str(tx.id), sealed_only=True) == 2:
            break
        await asyncio.sleep(0.02)
    assert await notices_audited(stack, str(tx.id), sealed_only=True) == 2


async def test_a_provider_that_refuses_gets_the_notice_again_later_and_it_goes_once(
    stack: Stack, notices: Notices
) -> None:
    user = await stack.user(phone="254712341032")  # the Daraja simulator's "cancelled by user"
    tx = await stack.deposit(user, 1_300)
    assert (await stack.settle(tx.id)).status is S.FAILED
    notices.sms._refuse_next = 405  # InsufficientBalance at Africa's Talking, once

    first = await notices.drain(stack)

    assert "retry" in [o.status for o in first]
    [sms] = notices.sms.sent_to("+254712341032")
    assert "deposit of KES 1,300.00 (USD 10.00) did not go through" in sms.body
    assert notices.email.sent == []  # the address was never verified: no email
    assert await notices_audited(stack, str(tx.id)) == 1


async def test_penpay_worker_notify_sends_the_notice_from_redis_streams(
    stack: Stack, key_prefix: str, redis_url: str, tmp_path: Path
) -> None:
    phone = f"2547{secrets.randbelow(100):02d}{secrets.randbelow(100):02d}{3000 + secrets.randbelow(5000)}"
    user = await stack.user(phone=phone)
    tx = await stack.deposit(user, 1_300)
    assert (await stack.settle(tx.id)).status is S.COMPLETED
    await stack.relay.drain()
    async with SmsSimulator() as sim:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PENPAY_")}
        env.update(
            {
                "PENPAY_APP_ENV": "testing",
                "PENPAY_DATABASE_URL": stack.database_url,
                "PENPAY_REDIS_URL": redis_url,
                "PENPAY_SMS_AT_USERNAME": DEFAULT_USERNAME,
                "PENPAY_SMS_AT_API_KEY": DEFAULT_API_KEY,
                "PENPAY_SMS_AT_BASE_URL": sim.base_url,
            }
        )
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "penpay", "worker", "notify", "--stream-prefix", key_prefix,
            env=env, cwd=str(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            for _ in range(300):  # bounded wait for the process to start and send
                if sim.sent_to(f"+{phone}") or worker.returncode is not None:
                    break
                await asyncio.sleep(0.05)
        finally:
            if worker.returncode is None:
                worker.send_signal(signal.SIGTERM)
            output = (await worker.communicate())[0].decode()
        [sms] = sim.sent_to(f"+{phone}")
    assert "deposit of KES 1,300.00 is complete: USD 10.00" in sms.body
    assert worker.returncode == 0, output[-2000:]
    assert '"notice.sent"' in output and phone not in output  # its logs mask the phone


async def test_notices_read_users_written_under_the_deployments_pii_keys(stack: Stack) -> None:
    """Production writes users under PENPAY_PII_KEYS; the notice consumers must read them with the
    same keys (they once built their units of work with the development key: every notice failed)."""
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    deployment = PiiCipher.configured(f"k9:{key}", production=True)
    user_id = await verified_user(stack, phone="254712345699")
    tx = await stack.deposit(user_id, 2_600)
    assert (await stack.settle(tx.id)).status is S.COMPLETED
    # The user written again under the deployment's key (read with the harness's development key,
    # kept as an old key during the rotation), as production's API writes every user.
    raw = base64.b64decode(key)
    rotating = PiiCipher({"k9": raw, DEV_KEY_ID: _DEV_KEY}, "k9")
    async with SqlUnitOfWork(stack.engine, cipher=rotating) as uow:
        user = await uow.users.get(user_id)
        assert user is not None
        # Encrypted at rest: what a notice's read of the user must decrypt.
        user.take_kyc_snapshot(
            KycSnapshot(
                first_name="Amina",
                last_name="Otieno",
                date_of_birth=0,
                citizen="ke",
                residence="ke",
                taken_at=datetime(2026, 3, 1, tzinfo=UTC),
            )
        )
        await uow.users.save(user)
        await uow.commit()

    async with SmsSimulator() as simulator:
        sms = AfricasTalkingSms(
            username=DEFAULT_USERNAME,
            api_key=DEFAULT_API_KEY,
            sender_id="PENPAY",
            base_url=simulator.base_url,
        )
        email = DevelopmentNotifier()
        consumers = notification_consumers(
            stack.bus, stack.engine, SplitNotifier(sms=sms, email=email), cipher=deployment, block_ms=10
        )
        notices = Notices(simulator, email, consumers)
        outcomes = await notices.drain(stack)
        await sms.aclose()
        assert [o.status for o in outcomes].count("handled") == 1, outcomes
        [sent] = simulator.sent_to("+254712345699")
        assert "KES 2,600.00" in sent.body


async def test_a_channel_that_fails_after_the_other_went_out_is_the_only_one_sent_again(
    stack: Stack, notices: Notices
) -> None:
    user = await verified_user(stack, phone="254712345681")
    tx = await stack.deposit(user, 2_600)
    assert (await stack.settle(tx.id)).status is S.COMPLETED
    notices.sms._refuse_next = 405  # the SMS fails once; the email goes out in the same delivery

    first = await notices.drain(stack)

    # The first delivery kept the email (its marker and record) and came back for the SMS alone.
    assert [o.status for o in first if o.status in ("handled", "retry")] == ["retry", "handled"]
    assert len(notices.sms.sent_to("+254712345681")) == 1
    assert len(notices.email.sent) == 1
    assert await notices_audited(stack, str(tx.id)) == 2


async def test_what_the_per_channel_groups_sent_before_is_not_sent_again(
    stack: Stack, notices: Notices
) -> None:
    """Until 2026-12 each channel had a group of its own; their inbox rows are the channels' markers,
    so the one group, reading the retained stream from its start, sends nothing they sent."""
    user = await verified_user(stack, phone="254712345682")
    tx = await stack.deposit(user, 2_600)
    assert (await stack.settle(tx.id)).status is S.COMPLETED
    await stack.relay.drain()
    [completed] = [
        fields["event_id"]
        for _, fields in await stack.bus.read_all("penpay.payments")
        if fields["event_type"] == "TransactionStatusChanged"
        and fields["aggregate_id"] == str(tx.id)
        and '"to_status":"COMPLETED"' in fields["payload"]
    ]
    async with stack.uow() as uow:  # the SMS group had sent it; the email group had not yet
        await inbox.record_processed(
            uow.connection, "payment-notice-sms", uuid.UUID(completed), uow.clock.now()
        )
        await uow.commit()

    outcomes = await notices.drain(stack)

    assert [o.status for o in outcomes].count("handled") == 1
    assert notices.sms.sent_to("+254712345682") == []
    assert len(notices.email.sent) == 1
    assert await notices_audited(stack, str(tx.id)) == 1
