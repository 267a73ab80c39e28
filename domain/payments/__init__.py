"""Payments context (PEC 2.2): the Transaction aggregate for deposits and withdrawals."""
