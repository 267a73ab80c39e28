"""The Daraja adapter's alerts (application.alerts): their kinds, and the one for a set-up error."""

from __future__ import annotations

from application.alerts import raise_alert
from mpesa_adapter import errors

# Daraja answered about another request than ours; the answer was not used and is kept for review.
FOREIGN_ANSWER_ALERT = "mpesa_foreign_answer"
# Our set-up (or whatever sits between us and Daraja) is wrong; the payment waits for it to be mended.
SETUP_ERROR_ALERT = "mpesa_setup_error"


def alert_setup_error(api: str, exc: errors.DarajaError, **ids: str) -> None:
    raise_alert(
        SETUP_ERROR_ALERT,
        f"Daraja {api} not accepted (HTTP {exc.http_status} {exc.error_code}); the payment waits",
        api=api,
        **ids,
    )
