"""Shared kernel (PEC 2.6): identifiers, domain events, errors, clock."""
