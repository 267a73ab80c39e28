"""The client channel to the Deriv gateway: one address, or the leader among several.

PENPAY_GATEWAY_ADDR may list the leader and its standbys ("127.0.0.1:50052,127.0.0.1:50053").
Only the lease holder reports SERVING for the gateway service, so gRPC's client-side health
checking with round_robin sends every call to whichever instance leads now, and follows a
failover without the callers knowing. The addresses may be names (compose's "gateway:50052,
gateway-standby:50053"): gRPC's address-list targets take IP literals only, so names are resolved
when the channel is made.
"""

from __future__ import annotations

import ipaddress
import json
import socket

import grpc

from penpay.deriv.v1 import deriv_gateway_pb2 as pb

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DerivGatewayService"].full_name

_LEADER_ONLY = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": SERVICE_NAME},
    }
)


def gateway_channel(addr: str) -> grpc.aio.Channel:
    addresses = [a.strip() for a in addr.split(",") if a.strip()]
    if len(addresses) == 1:
        return grpc.aio.insecure_channel(addresses[0])
    return grpc.aio.insecure_channel(
        address_list_target(addresses),
        options=[("grpc.service_config", _LEADER_ONLY)],
    )


def address_list_target(addresses: list[str]) -> str:
    """gRPC's "ipv4:a:p,b:p" (or "ipv6:[a]:p,...") target, names resolved (IPv4 preferred)."""
    resolved = [_resolve(a) for a in addresses]
    if all(ip.version == 4 for ip, _ in resolved):
        return "ipv4:" + ",".join(f"{ip}:{port}" for ip, port in resolved)
    if all(ip.version == 6 for ip, _ in resolved):
        return "ipv6:" + ",".join(f"[{ip}]:{port}" for ip, port in resolved)
    raise ValueError(f"gateway addresses mix IPv4 and IPv6: {', '.join(addresses)}")


def _resolve(address: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    host, _, port_text = address.rpartition(":")
    host, port = host.strip("[]"), int(port_text)
    try:
        return ipaddress.ip_address(host), port
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    ips = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not ips:
        raise ValueError(f"gateway address {address}: the name does not resolve")
    return min(ips, key=lambda ip: ip.version), port
