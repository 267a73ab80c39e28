"""Alerts: one ERROR record on penpay.alerts with its kind, counted into penpay_alerts_total."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from application.alerts import ALERTS_LOGGER, raise_alert
from workers.alert_metrics import count_alerts

pytestmark = pytest.mark.unit


def _count(kind: str) -> float:
    return REGISTRY.get_sample_value("penpay_alerts_total", {"kind": kind}) or 0.0


def test_an_alert_is_one_error_record_with_its_kind_and_ids(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger=ALERTS_LOGGER):
        raise_alert(
            "answer_about_another_id", "STK Query answered about another request", asked="ws_CO_1", got=None
        )
    (record,) = [r for r in caplog.records if r.name == ALERTS_LOGGER]
    assert record.levelno == logging.ERROR
    assert record.alert == "answer_about_another_id"  # type: ignore[attr-defined]
    assert record.asked == "ws_CO_1"  # type: ignore[attr-defined]
    assert not hasattr(record, "got")  # None ids are left out
    assert "asked=ws_CO_1" in record.getMessage()


def test_alerts_are_counted_by_kind_once_per_alert() -> None:
    count_alerts()
    count_alerts()  # installing twice must not count twice
    before, other = _count("unit_test_kind"), _count("unit_test_other")
    raise_alert("unit_test_kind", "one")
    raise_alert("unit_test_kind", "two")
    assert _count("unit_test_kind") == before + 2
    assert _count("unit_test_other") == other
