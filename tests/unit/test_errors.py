"""Every domain error carries a stable UPPER_SNAKE reason (it is the gRPC ErrorInfo reason)."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

import domain
from domain.shared.errors import DomainError

pytestmark = pytest.mark.unit


def _all_error_classes() -> list[type[DomainError]]:
    for module in pkgutil.walk_packages(domain.__path__, "domain."):
        importlib.import_module(module.name)
    found: list[type[DomainError]] = []
    stack: list[type[DomainError]] = [DomainError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def test_every_reason_is_upper_snake_and_unique() -> None:
    classes = _all_error_classes()
    assert len(classes) > 20
    reasons = [cls.reason for cls in classes]
    assert all(re.fullmatch(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*", r) for r in reasons)
    assert len(set(reasons)) == len(reasons)


def test_field_can_be_given_per_instance_over_the_class_default() -> None:
    from domain.wallet.errors import InvalidAmount

    assert InvalidAmount("x").field == "amount"
    assert InvalidAmount("x", field="amount_cents").field == "amount_cents"
    assert str(InvalidAmount("bad amount")) == "bad amount"


def test_a_failure_is_logged_by_its_type_and_the_servers_error_number_never_its_message() -> None:
    import pymysql
    from sqlalchemy.exc import OperationalError

    from application.errors import failure_fields

    deadlock = OperationalError(
        "UPDATE users SET phone = %s",
        {"phone": "254712345678"},
        pymysql.err.OperationalError(1213, "Deadlock"),
    )
    assert failure_fields(deadlock) == {
        "error": "OperationalError",
        "error_from": "sqlalchemy.exc",
        "db_errno": 1213,
    }
    assert failure_fields(RuntimeError("254712345678")) == {"error": "RuntimeError"}
    # the same name from two places: SQLAlchemy's pool running out is not an asyncio deadline
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    assert failure_fields(PoolTimeout("QueuePool limit reached")) == {
        "error": "TimeoutError",
        "error_from": "sqlalchemy.exc",
    }
    assert failure_fields(TimeoutError()) == {"error": "TimeoutError"}
