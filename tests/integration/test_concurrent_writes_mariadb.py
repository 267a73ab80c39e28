"""Writes that many requests make at once, on MariaDB (InnoDB locking): the audit chain written by
the post-commit sealer, and verification codes asked for by many new users at the same moment."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from application.identity.ports import VerificationPurpose
from domain.user.email import Email
from domain.user.password_hash import PasswordHash
from domain.user.phone_number import PhoneNumber
from domain.user.user import User
from persistence.audit import AuditRecord, verify_chain
from persistence.auth_store import SqlVerificationCodeStore
from persistence.engine import create_engine
from persistence.tables import audit_logs, audit_pending
from persistence.unit_of_work import SqlUnitOfWork

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)  # the orphan's, the user's and the codes' instant


@pytest.fixture
async def engine(fresh_mariadb_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_mariadb_url, pool_size=20)
    yield engine
    await engine.dispose()


async def audited_commit(engine: AsyncEngine, tag: str) -> None:
    async with SqlUnitOfWork(engine, actor=f"writer-{tag}") as uow:
        uow.audit(action="Test", subject_type="Test", subject_id=tag)
        await uow.commit()


async def test_concurrent_commits_are_sealed_into_one_chain_when_they_return(engine: AsyncEngine) -> None:
    await asyncio.gather(*(audited_commit(engine, str(i)) for i in range(40)))
    async with engine.connect() as connection:
        report = await verify_chain(connection)
        logged = (await connection.execute(select(func.count()).select_from(audit_logs))).scalar_one()
    assert report.ok, report.problems
    assert (report.rows_checked, report.pending, logged) == (40, 0, 40)


async def test_records_left_pending_by_a_dead_process_are_sealed_by_the_next_commit(
    engine: AsyncEngine,
) -> None:
    # What a process killed between its commit and its seal leaves behind: committed, unchained.
    orphan = AuditRecord(NOW, "crashed", "Orphan", "Test", "o-1", {"n": 1})
    async with engine.begin() as connection:
        await connection.execute(insert(audit_pending), [orphan.pending_row()])
        assert (await verify_chain(connection)).pending == 1

    await audited_commit(engine, "next")

    async with engine.connect() as connection:
        report = await verify_chain(connection)
        actions = (await connection.execute(select(audit_logs.c.action).order_by(audit_logs.c.id))).scalars()
        assert list(actions) == ["Orphan", "Test"]
    assert report.ok and report.pending == 0 and report.rows_checked == 2


async def test_a_failed_seal_leaves_the_records_committed_for_the_next_one(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import persistence.audit_sealer as sealer_module

    async def broken(*_: object, **__: object) -> int:
        raise ConnectionError("MariaDB went away mid-seal")

    with monkeypatch.context() as patch:  # fault injection: the seal after this commit fails
        patch.setattr(sealer_module, "seal_pending", broken)
        await audited_commit(engine, "first")  # the commit stands; the failure is only logged
    async with engine.connect() as connection:
        assert (await verify_chain(connection)).pending == 1

    await audited_commit(engine, "second")

    async with engine.connect() as connection:
        report = await verify_chain(connection)
    assert report.ok and report.pending == 0 and report.rows_checked == 2


async def test_a_unit_of_work_that_does_not_wait_leaves_its_seal_to_the_background(
    engine: AsyncEngine,
) -> None:
    from persistence.audit_sealer import sealer_for
    from persistence.tables import audit_chain_head

    holder = await engine.connect()  # holds the chain head: no seal can finish meanwhile
    await holder.begin()
    await holder.execute(select(audit_chain_head).with_for_update())
    async with SqlUnitOfWork(engine, actor="api", wait_for_seal=False) as uow:
        uow.audit(action="Test", subject_type="Test", subject_id="no-wait")
        await uow.commit()
    # back with the seal still blocked: the record is committed, waiting in audit_pending
    async with engine.connect() as connection:
        assert (await verify_chain(connection)).pending == 1
    await holder.rollback()
    await holder.close()

    await sealer_for(engine).settled()
    async with engine.connect() as connection:
        report = await verify_chain(connection)
    assert report.ok and report.pending == 0 and report.rows_checked == 1


def new_user() -> User:
    return User.register(
        email=Email(f"codes{secrets.token_hex(5)}@example.co.ke"),
        phone=PhoneNumber(f"+2547{secrets.randbelow(10**8):08d}"),
        password_hash=PasswordHash("$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA"),
        now=NOW,
    )


async def test_many_new_users_ask_for_a_code_at_once_without_a_deadlock(engine: AsyncEngine) -> None:
    users = [new_user() for _ in range(16)]
    async with SqlUnitOfWork(engine) as uow:
        for user in users:
            await uow.users.add(user)
        await uow.commit()
    codes = SqlVerificationCodeStore(engine)
    now = NOW

    async def ask(user: User) -> None:
        await codes.create(user_id=user.id, purpose=VerificationPurpose.PHONE, code="123456", now=now)

    for _ in range(3):  # a deadlock is a race: give it more than one chance to show
        await asyncio.gather(*(ask(user) for user in users))
    await codes.consume(user_id=users[0].id, purpose=VerificationPurpose.PHONE, code="123456", now=now)
