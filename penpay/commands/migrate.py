"""`penpay migrate`: Alembic upgrade head on PENPAY_DATABASE_URL (or, with --sql, its SQL)."""

from __future__ import annotations

import argparse

from penpay import event_loop


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("migrate", help="apply database migrations (alembic upgrade head)")
    parser.add_argument("--revision", default="head", help="target revision (default: head)")
    parser.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    parser.add_argument(
        "--sql",
        action="store_true",
        help="print the SQL of upgrading a new database instead (offline: for a DBA; nothing connects)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from penpay.settings import get_settings
    from persistence import migrate
    from persistence.urls import redact

    url = args.database_url or get_settings().database_url
    if args.sql:
        migrate.upgrade_sql(url, args.revision)
        return 0
    migrate.upgrade(url, args.revision)
    revision = event_loop.run(migrate.current_revision(url))
    print(f"database {redact(url)} is at schema revision {revision}")
    return 0
