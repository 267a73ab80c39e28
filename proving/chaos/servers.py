"""A private redis-server and a private mariadbd for a soak, so that killing them (kill -9) and
starting them again never touches the machine's shared servers on :3306 and :6379.

Both listen on loopback on a free port kept across restarts. Redis keeps nothing across a
restart (`--save "" --appendonly no`): what a Redis restart does to streams and the gateway lease
is part of what the soak provokes. MariaDB keeps its datadir (InnoDB recovers committed
transactions after a kill -9, fsync per commit as on the shared server).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from proving.cluster import ManagedProcess, free_port, tcp_open

DATABASE = "penpay"


def _require(program: str) -> str:
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError(f"{program} is not installed")
    return found


class PrivateRedis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = [
            "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--protected-mode", "yes", "--dir", str(workdir),
        ]  # fmt: skip
        self.process = ManagedProcess(
            "redis",
            argv,
            os.environ,
            workdir / "redis.log",
            lambda: tcp_open(self.port),
            program=[_require("redis-server")],
        )

    async def start(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        await self.process.start(timeout)

    async def stop(self) -> None:
        await self.process.stop()


class PrivateMariaDB:
    """mariadb-install-db into <workdir>/mariadb, then mariadbd on a free port and its own socket."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.datadir = workdir / "mariadb"
        # A unix socket path must stay under ~107 bytes: keep it in a short temp directory.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="penpay-mdb-"))
        self.url = f"mysql+asyncmy://root@127.0.0.1:{self.port}/{DATABASE}"
        argv = [
            "--no-defaults", f"--datadir={self.datadir}", f"--port={self.port}",
            "--bind-address=127.0.0.1", f"--socket={self.socket_dir / 'mysqld.sock'}",
            f"--pid-file={self.socket_dir / 'mysqld.pid'}", "--user=root", "--skip-log-bin",
            "--innodb-buffer-pool-size=128M", "--max-connections=400",
            "--transaction-isolation=REPEATABLE-READ", "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_bin", f"--log-error={workdir / 'mariadb.err'}",
        ]  # fmt: skip
        self.process = ManagedProcess(
            "mariadb",
            argv,
            os.environ,
            workdir / "mariadb.log",
            self._ready,
            program=[_require("mariadbd")],
        )

    async def _ready(self) -> bool:
        if not await tcp_open(self.port):
            return False
        import aiomysql

        try:
            connection = await aiomysql.connect(
                host="127.0.0.1", port=self.port, user="root", connect_timeout=2
            )
        except Exception:
            return False
        connection.close()
        return True

    async def _install(self) -> None:
        process = await asyncio.create_subprocess_exec(
            _require("mariadb-install-db"), "--no-defaults", f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal", "--skip-test-db", "--user=root",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed:\n{out.decode(errors='replace')[-3000:]}")

    async def start(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        if not (self.datadir / "mysql").exists():
            await self._install()
        await self.process.start(timeout)
        import aiomysql

        connection = await aiomysql.connect(host="127.0.0.1", port=self.port, user="root", autocommit=True)
        try:
            async with connection.cursor() as cursor:
                await cursor.execute(
                    f"CREATE DATABASE IF NOT EXISTS `{DATABASE}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                )
        finally:
            connection.close()

    async def stop(self) -> None:
        await self.process.stop(grace=30)
        shutil.rmtree(self.socket_dir, ignore_errors=True)
