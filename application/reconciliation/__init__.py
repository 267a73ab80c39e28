"""Reconciliation against the providers' own records (issue 17 item 2): pure rules and the use case."""
