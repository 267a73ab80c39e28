"""Telling users what became of their payments (texts here; delivery in workers/notifications.py)."""
