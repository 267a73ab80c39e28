"""Deriv answers about another operation than ours (issue 21): kept for review, and an alert.

Such an answer proves nothing about our operation, so the gateway treats it as an unknown outcome
(`errors.ForeignAnswer`) and resolves from what is provably ours. The answer itself is logged, token
and code fields masked, so an operator can see what the server said; the alert makes someone look.
"""

from __future__ import annotations

import json
from typing import Any

from application.alerts import raise_alert
from deriv_gateway.logs import get_logger, scrub

log = get_logger("deriv_gateway.foreign_answers")

ALERT = "deriv_foreign_answer"
KEPT_CHARS = 4000  # a statement page is long; its head is enough to see whose it is


def report(what: str, answer: dict[str, Any], **ids: str | int | None) -> None:
    """Record an answer naming another operation (`what` says how) and raise the alert."""
    raw = json.dumps(scrub(answer), separators=(",", ":"), default=str)[:KEPT_CHARS]
    log.error("gateway.foreign_answer", what=what, answer=raw, **ids)
    raise_alert(ALERT, f"Deriv answered about another operation: {what}", **ids)
