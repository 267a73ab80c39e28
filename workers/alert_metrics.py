"""Counts alerts (application/alerts.py) into Prometheus: penpay_alerts_total{kind}."""

from __future__ import annotations

import logging

from prometheus_client import Counter

from application.alerts import ALERTS_LOGGER

ALERTS = Counter("penpay_alerts", "Alerts raised, by kind (see application/alerts.py)", ["kind"])


class _AlertCounter(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        kind = getattr(record, "alert", None)
        if isinstance(kind, str):
            ALERTS.labels(kind=kind).inc()


_HANDLER = _AlertCounter(level=logging.ERROR)


def count_alerts() -> None:
    """Install the counter on the alerts logger once per process (idempotent)."""
    logger = logging.getLogger(ALERTS_LOGGER)
    if _HANDLER not in logger.handlers:
        logger.addHandler(_HANDLER)


count_alerts()
