"""`penpay healthcheck`: one probe for container health checks (exit 0 healthy, 1 not).

    penpay healthcheck --grpc 127.0.0.1:50051                 # gRPC health, overall status SERVING
    penpay healthcheck --grpc 127.0.0.1:50052 --service NAME  # ... of one service (the gateway's
                                                              # DerivGatewayService: the lease holder)
    penpay healthcheck --http http://127.0.0.1:8080/healthz   # any 2xx
    penpay healthcheck --tcp 127.0.0.1:8767                   # accepts a connection

The image carries no curl or grpc_health_probe: the wheel's own clients do the asking.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from penpay import event_loop


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("healthcheck", help="probe a PenPay process (for container health checks)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--grpc", metavar="HOST:PORT", help="ask the gRPC health service")
    target.add_argument("--http", metavar="URL", help="GET the URL, healthy on any 2xx")
    target.add_argument("--tcp", metavar="HOST:PORT", help="healthy when a TCP connection opens")
    parser.add_argument("--service", default="", help="gRPC health service name (default: the server)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        healthy, detail = event_loop.run(asyncio.wait_for(_probe(args), args.timeout))
    except (TimeoutError, OSError) as exc:
        healthy, detail = False, f"{type(exc).__name__}: {exc}"
    print(detail, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


async def _probe(args: argparse.Namespace) -> tuple[bool, str]:
    if args.grpc:
        return await _grpc(args.grpc, args.service)
    if args.http:
        return await _http(args.http)
    return await _tcp(args.tcp)


async def _grpc(addr: str, service: str) -> tuple[bool, str]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(addr) as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service)
            )
        except grpc.aio.AioRpcError as exc:
            return False, f"{addr} {service or '(server)'}: {exc.code().name}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{addr} {service or '(server)'}: {status}"


async def _http(url: str) -> tuple[bool, str]:
    import aiohttp

    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return 200 <= response.status < 300, f"{url}: HTTP {response.status}"
    except aiohttp.ClientError as exc:
        return False, f"{url}: {exc}"


async def _tcp(addr: str) -> tuple[bool, str]:
    host, _, port = addr.rpartition(":")
    _, writer = await asyncio.open_connection(host or "127.0.0.1", int(port))
    writer.close()
    return True, f"{addr}: open"
