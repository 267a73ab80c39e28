"""Crypto and security adapters: Argon2id passwords, RS256 access tokens with JWKS, AES-GCM
PII encryption, rate limiting, notification delivery and log redaction.

Adapters in the sense of the architecture: they implement ports of application.identity
and are wired by the composition root. Nothing here imports an entrypoint.
"""
