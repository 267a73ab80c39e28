"""PenPay's public surface: stateless gRPC services and the HTTP/JSON bridge (entrypoint layer)."""
