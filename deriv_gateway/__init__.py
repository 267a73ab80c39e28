"""Deriv gateway: Deriv WebSocket API v3 integration, and its simulator (`deriv_gateway.simulator`)."""
