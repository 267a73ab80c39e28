"""A private MariaDB server for one bench group: `mariadbd --datadir` in a temporary directory, on a
port of its own, so its global status counters (statements, commits, pings, row-lock waits) and its
CPU belong to this run alone, whoever else uses the machine's shared server.

    with private_mariadb() as server:   # None when mariadbd or mariadb-install-db is not installed
        server.admin_url                 # mysql+asyncmy://root@127.0.0.1:P/
        server.pid                       # for its CPU

Costs about 5 s (install-db + start). The server runs with the shared server's durability
(`innodb_flush_log_at_trx_commit=1`, no binary log) and performance_schema on, so the statement
digests can say which statements a deposit makes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql

from proving.cluster import free_port


@dataclass(frozen=True)
class PrivateServer:
    port: int
    pid: int
    datadir: Path
    socket: Path

    @property
    def admin_url(self) -> str:
        return f"mysql+asyncmy://root@127.0.0.1:{self.port}/"


def available() -> bool:
    return bool(shutil.which("mariadbd") and shutil.which("mariadb-install-db"))


def _running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@contextlib.contextmanager
def private_mariadb(
    timeout: float = 60.0, *, lock_wait_timeout: int | None = None
) -> Iterator[PrivateServer | None]:
    """`lock_wait_timeout`: the server's innodb_lock_wait_timeout (0: a statement that would wait
    for a row lock fails at once, which names it; bench --lock-waits)."""
    if not available():
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="penpay-bench-mariadb-") as tmp:
        root = Path(tmp)
        data = root / "data"
        user = ["--user=root"] if _running_as_root() else []
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={data}",
                *user,
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port, socket = free_port(), root / "mariadbd.sock"
        log = (root / "mariadbd.log").open("wb")
        process = subprocess.Popen(
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={data}",
                *user,
                f"--port={port}",
                "--bind-address=127.0.0.1",
                f"--socket={socket}",
                f"--pid-file={root / 'mariadbd.pid'}",
                "--skip-log-bin",
                "--innodb-flush-log-at-trx-commit=1",
                "--innodb-buffer-pool-size=256M",
                "--innodb-log-file-size=256M",
                "--max-connections=500",
                "--performance-schema=ON",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_bin",
                *([] if lock_wait_timeout is None else [f"--innodb-lock-wait-timeout={lock_wait_timeout}"]),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_ready(port, process, timeout, root / "mariadbd.log")
            yield PrivateServer(port=port, pid=process.pid, datadir=data, socket=socket)
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            log.close()


def _wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"private mariadbd exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            pymysql.connect(host="127.0.0.1", port=port, user="root", password="").close()
            return
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
