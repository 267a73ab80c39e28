"""Prometheus metrics of the gRPC API, and the HTTP endpoint that exposes them.

Counter `penpay_api_requests_total{method,code}` and histogram
`penpay_api_request_duration_seconds{method,code}` live in the default registry (like the
workers' metrics), so one /metrics page shows every PenPay metric of the process.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

REQUESTS = Counter("penpay_api_requests", "gRPC requests handled by the API", ["method", "code"])
LATENCY = Histogram(
    "penpay_api_request_duration_seconds",
    "Time from a gRPC request's arrival to its status",
    ["method", "code"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def observe(method: str, code: str, seconds: float) -> None:
    REQUESTS.labels(method=method, code=code).inc()
    LATENCY.labels(method=method, code=code).observe(seconds)


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


class MetricsServer:
    """GET /metrics in the Prometheus text format, on its own port (settings.metrics_addr)."""

    def __init__(self, addr: str, registry: CollectorRegistry = REGISTRY) -> None:
        self.addr = addr
        self.registry = registry
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = split_addr(self.addr)
        site = web.TCPSite(runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        self._runner = runner

    @property
    def url(self) -> str:
        host, _ = split_addr(self.addr)
        return f"http://{host}:{self.port}/metrics"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
