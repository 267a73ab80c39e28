"""Payments use cases: starting and moving deposits and withdrawals."""
