"""Argon2id hashing: parameters, rehash on change, policy, and the event loop stays free."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from application.identity.errors import WeakPassword
from application.identity.password_policy import check_password
from penpay.bootstrap import password_hasher
from penpay.settings import Settings
from security.passwords import FAST_FOR_TESTS, PRODUCTION, Argon2idHasher, Argon2Parameters

pytestmark = pytest.mark.unit


async def test_production_parameters_hash_verify_and_keep_the_loop_responsive() -> None:
    """The production parameter set, once: hashes run on the hasher's threads, at most two at a
    time, while the event loop goes on (proved by a hash that waits for the loop, not by timing)."""
    hasher = Argon2idHasher(PRODUCTION, max_concurrency=2)
    try:
        one = await hasher.hash("correct horse battery 9")
        assert one.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert await hasher.verify(one, "correct horse battery 9")
        assert not await hasher.verify(one, "correct horse battery 8")

        loop_thread = threading.get_ident()
        loop_ran = threading.Event()
        lock = threading.Lock()
        threads: set[int] = set()
        seen = {"running": 0, "most": 0}
        real_hash = hasher._hasher.hash

        def watched_hash(password: str, *, salt: bytes | None = None) -> str:
            with lock:
                threads.add(threading.get_ident())
                seen["running"] += 1
                seen["most"] = max(seen["most"], seen["running"])
            try:
                # Blocks until the loop has run other work: a hash on the loop would never return.
                assert loop_ran.wait(timeout=60), "the event loop did not run while a hash was hashing"
                return real_hash(password, salt=salt)
            finally:
                with lock:
                    seen["running"] -= 1

        class Watched:  # argon2's PasswordHasher has slots: wrap it rather than patch it
            hash = staticmethod(watched_hash)

        hasher._hasher = Watched()  # type: ignore[assignment]
        hashes = asyncio.gather(*(hasher.hash(f"password number {i}!") for i in range(10)))
        await asyncio.sleep(0)
        loop_ran.set()
        assert len(set(await hashes)) == 10
        assert loop_thread not in threads
        assert seen["most"] == 2  # the cap, reached: ten hashes never run ten at a time
    finally:
        hasher.close()


async def test_a_hash_made_with_other_parameters_needs_rehash() -> None:
    old = Argon2idHasher(FAST_FOR_TESTS)
    new = Argon2idHasher(Argon2Parameters(time_cost=2, memory_cost_kib=2048, parallelism=1))
    try:
        stored = await old.hash("correct horse battery 9")
        assert not old.needs_rehash(stored)
        assert new.needs_rehash(stored)
        assert await new.verify(stored, "correct horse battery 9")  # old hashes still verify
        assert new.needs_rehash("not-a-hash")
        assert not await new.verify("not-a-hash", "x")
    finally:
        old.close()
        new.close()


def test_parameters_from_configuration_and_the_production_floor() -> None:
    defaults = password_hasher(Settings(app_env="testing"))
    defaults.close()
    assert defaults.parameters == PRODUCTION
    cheap: dict[str, Any] = {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1}
    hasher = password_hasher(Settings(app_env="testing", **cheap))
    try:
        assert hasher.parameters == FAST_FOR_TESTS
    finally:
        hasher.close()
    with pytest.raises(ValueError, match="PENPAY_ARGON2"):
        password_hasher(Settings(app_env="production", **cheap))


@pytest.mark.parametrize(
    "password",
    [
        "short1!",
        "a" * 129 + "1",
        "alllowercaseletters",
        "123456789012345",
        "abababababab1",
        "jane.doe.2024!x",
    ],
)
def test_the_password_policy_refuses_weak_passwords(password: str) -> None:
    with pytest.raises(WeakPassword):
        check_password(password, email="jane.doe@example.com", phone="+254712345678")


def test_the_password_policy_accepts_a_long_mixed_password() -> None:
    assert check_password("correct horse battery 9") == "correct horse battery 9"
    assert check_password("ÉLAN vital 2026") == "ÉLAN vital 2026"
