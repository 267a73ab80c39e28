"""Load generation: N concurrent loops calling one async operation, timed or counted.

Every figure of the benchmark comes from here, so every figure is measured the same way:
a warm-up that is not counted, then a measured window; latencies per operation; failures
counted (never hidden) with the first error kept; CPU per operation of the processes named.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

Operation = Callable[[], Awaitable[object]]


@dataclass
class Sample:
    """What one measured window saw."""

    concurrency: int
    count: int  # operations completed without error
    errors: int
    elapsed: float
    latencies: list[float] = field(repr=False, default_factory=list)  # seconds, successful ops
    cpu_ms_per_op: dict[str, float] = field(default_factory=dict)
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    def percentile_ms(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
        return ordered[index] * 1000

    @property
    def p50_ms(self) -> float | None:
        return self.percentile_ms(0.50)

    @property
    def p99_ms(self) -> float | None:
        return self.percentile_ms(0.99)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU time so far of a process's threads in three groups: "loop" (the main thread,
    where asyncio runs), "grpc" (gRPC core's own threads) and "other" (a journal's writer thread).
    Linux /proc; {} elsewhere. A thread that ended before the second reading drops out of it."""
    groups: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return groups
    tick = os.sysconf("SC_CLK_TCK")
    for tid in tids:
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except OSError:
            continue
        group = "other"
        if tid == str(pid):
            group = "loop"
        elif comm.startswith(("event_engine", "grpc")):
            group = "grpc"
        groups[group] = groups.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return groups


class _Window:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.measuring = False
        self.count = 0
        self.errors = 0
        self.first_error: str | None = None
        self.latencies: list[float] = []

    async def call(self, one: Operation) -> None:
        t0 = time.perf_counter()
        try:
            await one()
        except Exception as exc:  # a failed operation is counted and shown, never dropped
            if self.measuring:
                self.errors += 1
                if self.first_error is None:
                    self.first_error = f"{type(exc).__name__}: {exc}"[:300]
            return
        if self.measuring:
            self.latencies.append(time.perf_counter() - t0)
            self.count += 1


async def timed(
    concurrency: int,
    one: Operation,
    *,
    seconds: float,
    warmup: float = 0.5,
    pids: Mapping[str, int] | None = None,
) -> Sample:
    """`concurrency` loops call `one` for `warmup` (not counted), then for `seconds` (measured)."""
    window = _Window(concurrency)
    deadline = [0.0]

    async def loops() -> None:
        async def loop() -> None:
            while time.monotonic() < deadline[0]:
                await window.call(one)

        await asyncio.gather(*(loop() for _ in range(concurrency)))

    if warmup > 0:
        deadline[0] = time.monotonic() + warmup
        await loops()
    window.measuring = True

    async def measured() -> None:
        deadline[0] = time.monotonic() + seconds
        await loops()

    return await _measure(window, measured, pids)


async def counted(concurrency: int, ops: list[Operation], *, pids: Mapping[str, int] | None = None) -> Sample:
    """Each operation in `ops` exactly once, `concurrency` at a time (for work that cannot repeat,
    e.g. deposits limited per user)."""
    window = _Window(concurrency)
    window.measuring = True
    queue = iter(ops)

    async def loops() -> None:
        async def loop() -> None:
            for one in queue:
                await window.call(one)

        await asyncio.gather(*(loop() for _ in range(concurrency)))

    return await _measure(window, loops, pids)


async def _measure(
    window: _Window, run: Callable[[], Awaitable[object]], pids: Mapping[str, int] | None
) -> Sample:
    pids = dict(pids or {})
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    await run()
    elapsed = time.monotonic() - started
    done = max(window.count, 1)
    cpu = {name: (cpu_seconds(pid) - before[name]) * 1000 / done for name, pid in pids.items()}
    return Sample(
        concurrency=window.concurrency,
        count=window.count,
        errors=window.errors,
        elapsed=elapsed,
        latencies=window.latencies,
        cpu_ms_per_op=cpu,
        first_error=window.first_error,
    )
