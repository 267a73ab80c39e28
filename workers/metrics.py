"""Prometheus metrics of the relay and the consumers (default registry)."""

from __future__ import annotations

from prometheus_client import Counter

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
