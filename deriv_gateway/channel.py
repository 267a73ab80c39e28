"""The client channel to the Deriv gateway: one address, or the leader among several.

PENPAY_GATEWAY_ADDR may list the leader and its standbys ("127.0.0.1:50052,127.0.0.1:50053").
Only the lease holder reports SERVING for the gateway service, so gRPC's client-side health
checking with round_robin sends every call to whichever instance leads now, and follows a
failover without the callers knowing.
"""

from __future__ import annotations

import json

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
        "ipv4:" + ",".join(addresses),
        options=[("grpc.service_config", _LEADER_ONLY)],
    )
