"""Wallet queries: what a user may read of their own ledger accounts (PEC 6.2: no aggregates)."""
