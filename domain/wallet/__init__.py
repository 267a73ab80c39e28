"""Wallet context (PEC 2.3): money, FX rates and the double-entry ledger."""
