"""Deriv's REST Payment-Agent API (api.derivws.com): the client the gateway's REST transport uses."""

from .client import CodeSent, DerivRestClient, RestResult, WalletBalance
from .envelope import EndpointAbsent, OperationPending, RequestIdNotFound, RequestIdTaken, decode

__all__ = [
    "CodeSent",
    "DerivRestClient",
    "EndpointAbsent",
    "OperationPending",
    "RequestIdNotFound",
    "RequestIdTaken",
    "RestResult",
    "WalletBalance",
    "decode",
]
