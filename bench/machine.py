"""Machine facts written with every run: absolute numbers only compare on the same machine."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                return text.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _mariadb_version(admin_url: str) -> str:
    import pymysql

    from bench.scratch import connect_args

    try:
        connection = pymysql.connect(**connect_args(admin_url))
    except pymysql.MySQLError as exc:
        return f"unreachable ({exc.args[0] if exc.args else exc})"
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT VERSION(), @@innodb_flush_log_at_trx_commit")
            version, flush = cursor.fetchone()
        return f"{version} (innodb_flush_log_at_trx_commit={flush})"
    finally:
        connection.close()


def _redis_version(redis_url: str) -> str:
    import redis

    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=2)
        return str(client.info("server").get("redis_version"))
    except redis.RedisError as exc:
        return f"unreachable ({exc})"


def facts(*, admin_url: str, redis_url: str) -> dict[str, Any]:
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "load_average_at_start": load,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "mariadb": _mariadb_version(admin_url),
        "redis": _redis_version(redis_url),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }
