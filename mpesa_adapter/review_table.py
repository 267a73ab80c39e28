"""`mpesa_callback_reviews`: callbacks that must never be acted on automatically, kept for a person.

The table lives with the rest of the schema (persistence.tables, migration 0003).
"""

from persistence.tables import mpesa_callback_reviews

__all__ = ["mpesa_callback_reviews"]
