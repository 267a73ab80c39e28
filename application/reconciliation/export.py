"""A run's items as a spreadsheet reads them: one set of columns for `penpay reconcile export` and the
console's download, and cells a spreadsheet cannot run as formulas."""

from __future__ import annotations

CSV_COLUMNS = (
    "item_key",
    "source",
    "item_class",
    "provider_ref",
    "transaction_id",
    "provider_amount_cents",
    "provider_amount_currency",
    "penpay_amount_cents",
    "penpay_amount_currency",
    "occurred_at",
    "review_status",
    "suspense_posting_id",
    "detail",
)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(text: str) -> str:
    """Text a spreadsheet would run as a formula is kept as text (OWASP's CSV injection advice)."""
    return "'" + text if text.startswith(_FORMULA) else text
