"""Alerts: trouble an operator must hear about without running a command.

An alert is one ERROR record on the `penpay.alerts` logger carrying `alert=<kind>` and the ids it is
about (never a secret, a token or a full phone number). The application layer raises them through the
standard library only; whoever wires a process turns them into a Prometheus counter
(`penpay_alerts_total{kind}`, workers/alert_metrics.py) and ships the log line.
"""

from __future__ import annotations

import logging

ALERTS_LOGGER = "penpay.alerts"
_log = logging.getLogger(ALERTS_LOGGER)


def raise_alert(kind: str, message: str, **ids: str | int | None) -> None:
    """Record an alert of `kind` (snake_case, stable: dashboards and rules key on it)."""
    fields = {k: v for k, v in ids.items() if v is not None}
    detail = " ".join(f"{k}={v}" for k, v in sorted(fields.items()))
    suffix = f" ({detail})" if detail else ""
    # `extra` keys must not be LogRecord attributes (name, message, ...): ids use their own names.
    _log.error("ALERT %s: %s%s", kind, message, suffix, extra={"alert": kind, **fields})
