"""What a bench role's engine sends MariaDB: statements, commits and rollbacks, counted by
SQLAlchemy's own events in that process, read by the bench around a measured window.

The e2e group reads MariaDB's server counters on a private mariadbd; the api group runs on the shared
server, whose counters other users move, so it counts on the client side instead: every statement
the API process executes (the background audit seal's included), every COMMIT and every ROLLBACK
(a read-only unit of work's end is one). The role writes its counts to a file when sent SIGUSR1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

ENV = "PENPAY_BENCH_SQL_COUNTS"  # the file a role writes its counts to


def install(engine: AsyncEngine, path: str) -> None:
    """Count on `engine`; on SIGUSR1 write the counts so far to `path` (JSON, with a sequence)."""
    counts = {"statements": 0, "commits": 0, "rollbacks": 0, "seq": 0}

    def statement(*_: Any, **__: Any) -> None:
        counts["statements"] += 1

    def commit(*_: Any) -> None:
        counts["commits"] += 1

    def rollback(*_: Any) -> None:
        counts["rollbacks"] += 1

    sync = engine.sync_engine
    event.listen(sync, "before_cursor_execute", statement)
    event.listen(sync, "commit", commit)
    event.listen(sync, "rollback", rollback)

    def dump() -> None:
        counts["seq"] += 1
        tmp = f"{path}.tmp"
        Path(tmp).write_text(json.dumps(counts))
        os.replace(tmp, path)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)


async def read(pid: int, path: str, timeout: float = 5.0) -> dict[str, int]:
    """Ask the role `pid` for its counts and wait for the file it writes."""
    before = _seq(path)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _seq(path) > before:
            data: dict[str, int] = json.loads(Path(path).read_text())
            return data
        await asyncio.sleep(0.02)
    raise TimeoutError(f"role {pid} did not write its SQL counts")


def _seq(path: str) -> int:
    try:
        return int(json.loads(Path(path).read_text())["seq"])
    except (OSError, ValueError, KeyError):
        return 0
