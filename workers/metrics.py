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
