"""The database server PenPay runs on: MariaDB 10.6 or later, or SQLite (the embedded default).

MySQL is not one: the audit sealer's `INSERT ... RETURNING` (persistence/audit.py) is MariaDB's
(10.5), and the queue tables are emptied through `JSON_TABLE` (persistence/delete_by_ids.py, 10.6).
On another server the first seal would fail and the audit chain stop, so `penpay migrate` (the
deployment's first step) refuses it, naming the server it found, before it changes anything."""

from __future__ import annotations

MINIMUM_MARIADB = (10, 6)


class UnsupportedDatabase(RuntimeError):
    """PENPAY_DATABASE_URL names a server PenPay cannot run on."""


def require_supported(dialect: str, *, is_mariadb: bool, version: tuple[int | str, ...] | None) -> None:
    """Raise UnsupportedDatabase unless the server (as SQLAlchemy's dialect saw it on connecting) is
    MariaDB 10.6 or later, or SQLite."""
    if dialect not in ("mysql", "mariadb"):
        return
    shown = ".".join(str(part) for part in version or ()) or "of an unknown version"
    if not is_mariadb:
        raise UnsupportedDatabase(
            f"PENPAY_DATABASE_URL names a MySQL server ({shown}); PenPay needs MariaDB "
            f"{_dotted(MINIMUM_MARIADB)} or later (INSERT ... RETURNING seals the audit chain, "
            "JSON_TABLE empties its queue tables)"
        )
    numbers = tuple(part for part in version or () if isinstance(part, int))
    if numbers[:2] < MINIMUM_MARIADB:
        raise UnsupportedDatabase(
            f"PENPAY_DATABASE_URL names MariaDB {shown}; PenPay needs {_dotted(MINIMUM_MARIADB)} or "
            "later (JSON_TABLE empties the audit and ledger queue tables)"
        )


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


__all__ = ["MINIMUM_MARIADB", "UnsupportedDatabase", "require_supported"]
