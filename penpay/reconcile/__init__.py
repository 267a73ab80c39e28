"""Wiring of reconciliation (application/reconciliation) to Daraja, the Deriv gateway and the database."""
