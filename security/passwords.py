"""Argon2id password hashing (argon2-cffi), kept off the event loop.

Production parameters (RFC 9106 section 4, "second recommended option", and above the OWASP
minimum of m=19 MiB, t=2, p=1): Argon2id, time_cost=3, memory_cost=64 MiB, parallelism=4,
32-byte hash, 16-byte random salt. One hash costs roughly 0.1-0.3 s of CPU (measured by
tests/identity/test_passwords.py::test_production_parameters).

Event loop: a hash runs in a small thread pool of this hasher's own (argon2-cffi releases the GIL
while hashing), behind an asyncio.Semaphore of the same size (default 2). A login storm then
queues on the semaphore instead of stalling other coroutines or taking every CPU, and at most
`max_concurrency` x memory_cost of RAM is in use for hashing.

Parameters can be changed by configuration (PENPAY_ARGON2_TIME_COST, PENPAY_ARGON2_MEMORY_KIB,
PENPAY_ARGON2_PARALLELISM, PENPAY_ARGON2_MAX_CONCURRENCY in penpay/settings.py, handed in
by the composition root); production refuses anything below the OWASP minimum. Hashes made
with other parameters are upgraded at the next successful login (needs_rehash).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    time_cost: int = 3
    memory_cost_kib: int = 64 * 1024
    parallelism: int = 4
    hash_len: int = 32
    salt_len: int = 16

    def meets_owasp_minimum(self) -> bool:
        return self.memory_cost_kib >= 19 * 1024 and self.time_cost >= 2 and self.parallelism >= 1

    @classmethod
    def configured(
        cls, *, time_cost: int, memory_cost_kib: int, parallelism: int, production: bool
    ) -> Argon2Parameters:
        params = cls(time_cost=time_cost, memory_cost_kib=memory_cost_kib, parallelism=parallelism)
        if production and not params.meets_owasp_minimum():
            raise ValueError(
                "PENPAY_ARGON2_*: below the OWASP minimum (m=19 MiB, t=2, p=1), refused in production"
            )
        return params


PRODUCTION = Argon2Parameters()
# Cheap parameters for tests only: still Argon2id, ~1 ms per hash.
FAST_FOR_TESTS = Argon2Parameters(time_cost=1, memory_cost_kib=1024, parallelism=1)

# A valid hash of a random password: verified against when no user matches, so a login for an
# unknown email costs as much as one for a known email (no user enumeration by timing).
_DUMMY_PASSWORD = "penpay-dummy-password-for-constant-time"


class Argon2idHasher:
    def __init__(self, parameters: Argon2Parameters = PRODUCTION, *, max_concurrency: int = 2) -> None:
        self.parameters = parameters
        self._hasher = PasswordHasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_cost_kib,
            parallelism=parameters.parallelism,
            hash_len=parameters.hash_len,
            salt_len=parameters.salt_len,
            type=Type.ID,
        )
        self._max_concurrency = max_concurrency
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="argon2")
        self._semaphores: dict[int, asyncio.Semaphore] = {}
        self._dummy_hash: str | None = None

    def _semaphore(self) -> asyncio.Semaphore:
        # One per event loop: asyncio primitives belong to the loop they are first used in.
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(id(loop))
        if semaphore is None:
            semaphore = self._semaphores[id(loop)] = asyncio.Semaphore(self._max_concurrency)
        return semaphore

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._semaphore():
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def hash(self, password: str) -> str:
        result: str = await self._off_loop(self._hasher.hash, password)
        return result

    def _verify_sync(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(self, password_hash: str, password: str) -> bool:
        result: bool = await self._off_loop(self._verify_sync, password_hash, password)
        return result

    async def burn(self, password: str) -> None:
        """Spend one verification's cost for nothing (login with an unknown account)."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(_DUMMY_PASSWORD)
        await self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
