"""Prometheus metrics of the relay and the consumers (default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DEAD_LETTERS = Counter(
    "penpay_dead_letters",
    "Messages moved to a dead-letter stream after failing their deliveries",
    ["stream", "group"],
)
EVENTS_PUBLISHED = Counter("penpay_outbox_published", "Outbox events published by the relay", ["stream"])
PUBLISH_FAILURES = Counter("penpay_outbox_publish_failures", "Relay batches the bus refused")
EVENTS_HANDLED = Counter(
    "penpay_events_handled", "Events whose handler committed", ["stream", "group", "event_type"]
)
DUPLICATES_SKIPPED = Counter(
    "penpay_events_duplicate", "Redelivered events skipped by the inbox", ["stream", "group"]
)
HANDLER_FAILURES = Counter("penpay_handler_failures", "Handler or commit failures", ["stream", "group"])

# Set by the sweeper (workers/sagas.py report_in_flight): money that is still moving, or waiting for
# a person, and for how long. A step Deriv keeps rate-limiting, a lost wake-up the sweeper cannot
# move, a review nobody takes: each shows as an age that keeps growing. Alert on the age.
IN_FLIGHT = Gauge(
    "penpay_transactions_in_flight",
    "Transactions not finished (NEEDS_REVIEW included), by type and status",
    ["type", "status"],
)
OLDEST_IN_FLIGHT = Gauge(
    "penpay_transactions_oldest_in_flight_seconds",
    "Age (since creation) of the oldest transaction in this type and status; 0 when there is none",
    ["type", "status"],
)

# Set by the continuous auditor (workers/auditor.py, `penpay worker audit`) after each run.
AUDIT_CHECK_OK = Gauge(
    "penpay_audit_check_ok",
    "1: the auditor's last run found the check healthy, 0: failed, -1: skipped",
    ["check"],
)
AUDIT_RUNS = Counter("penpay_audit_runs", "Auditor runs completed")
AUDIT_LEDGER_SUM = Gauge(
    "penpay_audit_ledger_sum_minor",
    "Ledger debits - credits, per currency (0 in a sound ledger)",
    ["currency"],
)
AUDIT_OVERDRAWN = Gauge("penpay_audit_overdrawn_accounts", "No-overdraft accounts below zero")
AUDIT_BALANCE_MISMATCHES = Gauge(
    "penpay_audit_balance_mismatches",
    "Accounts (touched since the checkpoint) whose balance is not their entries",
)
AUDIT_CHAIN_PROBLEMS = Gauge("penpay_audit_chain_problems", "Problems the audit chain walk found")
AUDIT_OLDEST_PENDING = Gauge(
    "penpay_audit_oldest_pending_seconds",
    "Age of the oldest audit record committed but not sealed into the chain yet; 0 when none waits",
)
# Set by the background audit sealer (workers/audit_sealing.py).
AUDIT_SEALED = Counter("penpay_audit_sealed", "Audit records the background sealer chained")
AUDIT_FLOAT_DIFFERENCE = Gauge(
    "penpay_audit_float_difference_minor",
    "A float in the ledger minus the provider's balance (minor units)",
    ["float", "currency"],
)
AUDIT_PAST_TIME_LIMIT = Gauge(
    "penpay_audit_transactions_past_limit",
    "Non-terminal transactions whose status has not changed within PENPAY_AUDIT_STALE_AFTER",
    ["type", "status"],
)
# Set by the FloatLow consumer (workers/float_low.py).
FLOAT_LOW_BALANCE = Gauge(
    "penpay_float_low_balance_minor",
    "A float's balance when it last raised FloatLow (minor units)",
    ["kind", "currency"],
)
