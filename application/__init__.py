"""Application layer: use cases, sagas' decisions, the unit-of-work port, idempotency.

Depends on the domain and on ports only; persistence and adapters implement the ports.
"""
